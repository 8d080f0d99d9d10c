"""``medgo serve``: check a Serve config, then ``serve run`` it; ``medgo serve export``: feedback JSONL.

    medgo serve                                    # serve_configs/local.yaml: tiny model on :8000
    medgo serve serve_configs/local.yaml --check   # validate only
    medgo serve export --config serve_configs/local.yaml --output runs/serve/feedback.jsonl
    medgo serve export --database postgresql+psycopg2://medgo@db/medgo --output feedback.jsonl --since 2025-01-01

Checking first means a mistyped key or a missing adapter directory is reported, by name,
before Ray starts anything.
"""

from __future__ import annotations

import argparse
import sys
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


def export_main(args: argparse.Namespace) -> int:
    from medgo.serve.store import FeedbackStore

    url = args.database or load_serve_config(args.config)[1][0].resolved_database_url()
    since = datetime.fromisoformat(args.since) if args.since else None
    store = FeedbackStore(url, create=False)
    out_path = Path(args.output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", encoding="utf-8") as out:
        n = store.export_jsonl(out, since)
    store.close()
    print(f"wrote {n} feedback records to {out_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medgo serve", description="serve MedGo on Ray Serve (OpenAI-compatible API)")
    parser.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG), help="Serve config file (default: serve_configs/local.yaml)")
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    return parser


def build_export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medgo serve export", description="write doctors' feedback as JSONL for the preference stage")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", default=str(DEFAULT_CONFIG), help="take the database from this Serve config's args")
    source.add_argument("--database", help="SQLAlchemy URL of the feedback store")
    parser.add_argument("--output", required=True, help="JSONL file to write")
    parser.add_argument("--since", help="only feedback given at or after this ISO time")
    return parser


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["export"]:
            return export_main(build_export_parser().parse_args(argv[1:]))
        return run_main(build_parser().parse_args(argv))
    except ConfigError as exc:
        print(f"medgo serve: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
