#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the feedback-store tests and print its SQLAlchemy URL:
#   export MEDGO_TEST_POSTGRES_URL="$(tests/serve/start_postgres.sh)"
# Installs PostgreSQL with apt-get when missing (as root); data in $MEDGO_PG_DIR, port $MEDGO_PG_PORT.
# Stop it with: pg_ctl -D "$MEDGO_PG_DIR" stop   (as the postgres user when started as root)
set -euo pipefail
PORT="${MEDGO_PG_PORT:-55432}"
DIR="${MEDGO_PG_DIR:-/tmp/medgo-postgres}"
find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
BIN="$(find_bin)"
if [ -z "$BIN" ]; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  BIN="$(find_bin)"
fi
RUN=()
if [ "$(id -u)" = 0 ]; then RUN=(runuser -u postgres --); fi
if ! "$BIN/pg_isready" -h 127.0.0.1 -p "$PORT" -q; then
  mkdir -p "$DIR"
  if [ "$(id -u)" = 0 ]; then chown postgres "$DIR"; chmod 700 "$DIR"; fi
  if [ ! -f "$DIR/PG_VERSION" ]; then
    "${RUN[@]}" "$BIN/initdb" -D "$DIR" -U medgo --auth=trust -E UTF8 >&2
  fi
  "${RUN[@]}" "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w \
    -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=300" start >&2
fi
echo "postgresql+psycopg2://medgo@127.0.0.1:$PORT/postgres"
