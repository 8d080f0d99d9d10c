"""``medgo serve``: check a Serve config, then ``serve run`` it; export, purge and manage keys.

    medgo serve                                    # serve_configs/local.yaml: tiny model on :8000
    medgo serve serve_configs/local.yaml --check   # validate only
    medgo serve export --config serve_configs/local.yaml --output runs/serve/feedback.jsonl
    medgo serve export --database postgresql+psycopg2://medgo@db/medgo --output feedback.jsonl --since 2025-01-01
    medgo serve purge --older-than 90d [--mode deidentify]
    medgo serve keys add dr-wang --scopes feedback,review --key-file /etc/medgo/api_keys
    medgo serve keys list | revoke NAME

Checking first means a mistyped key or a missing adapter directory is reported, by name,
before Ray starts anything.  The export is de-identified unless ``--raw-unsafe``; export and
purge read the database directly and write an audit row under the OS user's name and the command.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import yaml

from medgo.config import REPO_ROOT, ConfigError, build_config
from medgo.serve.settings import ServeSettings

DEFAULT_CONFIG = REPO_ROOT / "serve_configs" / "local.yaml"
IMPORT_PATH = "medgo.serve.app:build_app"


def load_serve_config(path: str | Path, check_paths: bool = True) -> tuple[dict, list[ServeSettings]]:
    """The Serve config (validated by Serve's schema) and the settings of each MedGo application.

    ``check_paths`` also requires every adapter directory to exist here (off for cluster configs
    checked away from the cluster).
    """
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"serve config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        ServeDeploySchema.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"invalid serve config {path}: {exc}") from None
    apps = [a for a in raw.get("applications", []) if a.get("import_path") == IMPORT_PATH]
    if not apps:
        raise ConfigError(f"{path}: no application with import_path {IMPORT_PATH}")
    settings = [build_config(ServeSettings, a.get("args") or {}, f"{path} (application {a.get('name')!r} args)") for a in apps]
    for s in settings if check_paths else []:
        for name, adapter_dir in s.adapters.items():
            if not Path(adapter_dir, "adapter_config.json").is_file():
                raise ConfigError(f"{path}: adapter {name!r}: {adapter_dir} is not a PEFT adapter directory")
    return raw, settings


def run_main(args: argparse.Namespace) -> int:
    load_serve_config(args.config)
    if args.check:
        print(f"{args.config}: ok")
        return 0
    from ray.serve.scripts import cli

    cli.main(args=["run", str(args.config)], prog_name="serve", standalone_mode=False)
    return 0


def database_url(args: argparse.Namespace) -> str:
    return args.database or load_serve_config(args.config)[1][0].resolved_database_url()


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        return f"uid-{os.getuid()}"


def export_main(args: argparse.Namespace) -> int:
    from medgo.serve.store import FeedbackStore

    since = datetime.fromisoformat(args.since) if args.since else None
    store = FeedbackStore(database_url(args))  # creates the audit table of an older database
    out_path = Path(args.output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    with out_path.open("w", encoding="utf-8") as out:
        n = store.export_jsonl(out, since, raw=args.raw_unsafe, counts=counts)
    arguments = {"since": args.since, "output": str(out_path), "raw_unsafe": args.raw_unsafe}
    store.audit(os_user(), "medgo serve export", "export", arguments, n, {"replaced": dict(counts)})
    store.close()
    if args.raw_unsafe:
        print("medgo serve export: --raw-unsafe: prompts, answers and corrections are NOT de-identified", file=sys.stderr)
    replaced = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    print(f"wrote {n} feedback records to {out_path}" + ("" if args.raw_unsafe else f"; identifiers replaced: {replaced}"))
    return 0


def purge_main(args: argparse.Namespace) -> int:
    from medgo.serve.store import FeedbackStore, iso, parse_age, utcnow

    try:
        before = utcnow() - parse_age(args.older_than)
    except ValueError as exc:
        raise ConfigError(f"--older-than: {exc}") from None
    store = FeedbackStore(database_url(args))
    arguments = {"older_than": args.older_than, "mode": args.mode, "before": iso(before)}
    result = store.purge(before, args.mode, actor=os_user(), source="medgo serve purge", arguments=arguments)
    store.close()
    verb = "deleted" if args.mode == "delete" else "de-identified"
    print(f"{verb} {result['completions']} completions and {result['feedback']} feedback rows created before {iso(before)}"
          + (f"; identifiers replaced: {result['replaced']}" if args.mode == "deidentify" else ""))
    return 0


def keys_main(args: argparse.Namespace) -> int:
    from medgo.serve.security import KeyFileError, add_key, read_key_file, revoke_key

    path = args.key_file or load_serve_config(args.config, check_paths=False)[1][0].api_key_file
    if not path:
        raise ConfigError(f"{args.config} sets no api_key_file: pass --key-file")
    try:
        if args.action == "add":
            key = add_key(path, args.name, args.scopes)
            print(f"added key {args.name!r} ({args.scopes}) to {path}; the key, shown only now:\n{key}")
        elif args.action == "revoke":
            revoke_key(path, args.name)
            print(f"revoked key {args.name!r} in {path}")
        else:
            for k in read_key_file(path):
                print(f"{k.name}\t{','.join(k.scopes)}\t{k.digest[:19]}...")
    except (KeyFileError, FileNotFoundError) as exc:
        raise ConfigError(str(exc)) from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medgo serve", description="serve MedGo on Ray Serve (OpenAI-compatible API)")
    parser.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG), help="Serve config file (default: serve_configs/local.yaml)")
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    return parser


def add_source(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", default=str(DEFAULT_CONFIG), help="take the database from this Serve config's args")
    source.add_argument("--database", help="SQLAlchemy URL of the feedback store")


def build_export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medgo serve export", description="write doctors' feedback as de-identified JSONL for the preference stage (audited)")
    add_source(parser)
    parser.add_argument("--output", required=True, help="JSONL file to write")
    parser.add_argument("--since", help="only feedback given at or after this ISO time")
    parser.add_argument("--raw-unsafe", action="store_true", help="write prompts, answers and corrections as stored, identifiers included")
    return parser


def build_purge_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medgo serve purge", description="delete or de-identify stored completions older than an age (audited)")
    add_source(parser)
    parser.add_argument("--older-than", required=True, help="age: 48h, 90d, 12w")
    parser.add_argument("--mode", choices=["delete", "deidentify"], default="delete",
                        help="delete the completions with their feedback (default), or replace their text by de-identified text")
    return parser


def build_keys_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medgo serve keys", description="API keys: names, scopes and SHA-256 hashes in the key file")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="take the key file from this Serve config's api_key_file")
    parser.add_argument("--key-file", help="the key file (default: the config's api_key_file)")
    actions = parser.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a key; prints the new key once, stores only its hash")
    add.add_argument("name")
    add.add_argument("--scopes", required=True, help="comma-separated: chat, feedback, review, admin")
    actions.add_parser("list", help="names and scopes")
    revoke = actions.add_parser("revoke", help="remove a key")
    revoke.add_argument("name")
    return parser


COMMANDS = {"export": (build_export_parser, export_main), "purge": (build_purge_parser, purge_main), "keys": (build_keys_parser, keys_main)}


def main(argv: list[str]) -> int:
    try:
        if argv[:1] and argv[0] in COMMANDS:
            build, run = COMMANDS[argv[0]]
            return run(build().parse_args(argv[1:]))
        return run_main(build_parser().parse_args(argv))
    except ConfigError as exc:
        print(f"medgo serve: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
