"""``medgo flywheel``: the registry's versions, their acceptance, and the decisions on them.

    medgo flywheel init [--adapter DIR]            # register what is served now as production, publish
    medgo flywheel status [--json]                 # per live version: answers, judgements, acceptance (95% CI)
    medgo flywheel promote medgo-tiny-r0003 --reason "acceptance up"
    medgo flywheel rollback medgo-tiny-r0003 --reason "wrong dosages"
    medgo flywheel share 0.3                       # the canary's share of conversations
    medgo flywheel check                           # the auto-rollback rule (run by cron or a round)
    medgo flywheel publish                         # push the registry's live versions to the running app

Every command takes ``--config jobs/configs/flywheel/<name>.yaml`` (its ``database_url``,
``database_url_env``, ``model`` and ``control:`` section), or ``--database``/``--model``; the
running application is found on the Ray cluster at ``--address`` (default ``$RAY_ADDRESS`` or the
local one).  Changes are written to the audit table under the OS user's name and the command, and
published to the running application in place unless ``--no-publish``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from medgo.config import ConfigError, build_config
from medgo.flywheel.control import ControlConfig, PublishError, check, live_acceptance, promote, publish, set_share
from medgo.flywheel.registry import Registry, RegistryError
from medgo.flywheel.stats import rollback_verdict

DEFAULT_DATABASE = "sqlite:///runs/serve/feedback.db"
DEFAULT_MODEL = "medgo-tiny"


@dataclass
class Target:
    database_url: str
    model: str
    control: ControlConfig


def parser(command: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"medgo flywheel {command}", description=description)
    p.add_argument("--config", help="flywheel YAML: its database_url, database_url_env, model and control: section")
    p.add_argument("--database", help=f"SQLAlchemy URL of the serving database (default: the config's, $MEDGO_DATABASE_URL, {DEFAULT_DATABASE})")
    p.add_argument("--model", help=f"served model name (default: the config's, {DEFAULT_MODEL})")
    p.add_argument("--app", help="Serve application name (default: control.app, medgo)")
    p.add_argument("--address", help="Ray address of the running application (default: control.ray_address, $RAY_ADDRESS, auto)")
    p.add_argument("--no-publish", action="store_true", help="change the registry only; do not update the running application")
    return p


def target(args: argparse.Namespace) -> Target:
    """The database, model and control settings from the flags, the config file and the defaults."""
    raw: dict = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise ConfigError(f"flywheel config not found: {path}")
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    control = build_config(ControlConfig, raw.get("control") or {}, f"{args.config} (control)")
    control = control.model_copy(update={k: v for k, v in {"app": args.app, "ray_address": args.address}.items() if v})
    if args.no_publish:
        control = control.model_copy(update={"publish": False})
    env = raw.get("database_url_env", "MEDGO_DATABASE_URL")
    database = args.database or (env and os.environ.get(env)) or raw.get("database_url") or DEFAULT_DATABASE
    return Target(database, args.model or raw.get("model") or DEFAULT_MODEL, control)


def run(work, argv: list[str], command: str, description: str, extra=None) -> int:
    """Parse, open the registry, run ``work(registry, target, args)``; user errors exit 2, a failed publish 1."""
    p = parser(command, description)
    if extra:
        extra(p)
    args = p.parse_args(argv)
    try:
        tgt = target(args)
        registry = Registry(tgt.database_url)
    except ConfigError as exc:
        print(f"medgo flywheel {command}: error: {exc}", file=sys.stderr)
        return 2
    try:
        return int(work(registry, tgt, args) or 0)
    except RegistryError as exc:
        print(f"medgo flywheel {command}: error: {exc}", file=sys.stderr)
        return 2
    except PublishError as exc:
        print(f"medgo flywheel {command}: the registry is updated, the running application is not: {exc}\n"
              "  run `medgo flywheel publish` once the application is running", file=sys.stderr)
        return 1
    finally:
        registry.close()


def sync(registry: Registry, tgt: Target) -> None:
    """Publish the live versions to the running application (unless publishing is off)."""
    if not tgt.control.publish:
        return
    c = tgt.control
    live = publish(registry, tgt.model, app=c.app, deployment=c.deployment, address=c.ray_address, timeout_s=c.publish_timeout_s)
    share = f", canary {live.canary.version} at {live.canary_share:.0%}" if live.canary else ""
    print(f"published to {c.app}: production {live.production.version}{share}")


def actor() -> str:
    return getpass.getuser()


def status_rows(registry: Registry, tgt: Target) -> dict:
    """Live versions with their acceptance, and the auto-rollback rule's verdict."""
    live, stats = registry.live(tgt.model), live_acceptance(registry, tgt.model)
    rows = [{"role": role, "version": live[role]["version"], "parent": live[role]["parent"], "method": live[role]["method"],
             "share": (live["canary_share"] if role == "canary" else 1 - live["canary_share"] if live["canary"] else 1.0), **stats[role].as_dict()}
            for role in ("production", "canary") if live[role]]
    verdict = rollback_verdict(stats["canary"], stats["production"], tgt.control.auto_rollback) if stats["canary"] and stats["production"] else None
    return {"model": tgt.model, "versions": rows, "auto_rollback": {"fire": verdict[0], "why": verdict[1]} if verdict else None}


def status_lines(report: dict) -> list[str]:
    """``medgo flywheel status``'s table, one string per line."""
    if not report["versions"]:
        return [f"{report['model']}: no live version in the registry (medgo flywheel init registers the model served now)"]
    lines = [f"{report['model']}:", f"  {'role':<11}{'version':<24}{'share':>6}{'answers':>9}{'judged':>8}{'accepted':>10}   95% interval"]
    for r in report["versions"]:
        rate = f"{r['rate']:.1%}" if r["rate"] is not None else "-"
        ci = f"{r['interval'][0]:.1%} .. {r['interval'][1]:.1%}" if r["interval"] else "-"
        lines.append(f"  {r['role']:<11}{r['version']:<24}{r['share']:>6.0%}{r['answers']:>9}{r['judgements']:>8}{rate:>10}   {ci}")
    if report["auto_rollback"]:
        rule = report["auto_rollback"]
        lines.append(f"  auto-rollback: {'FIRES' if rule['fire'] else 'holds'} ({rule['why']})")
    return lines


def print_status(report: dict) -> None:
    print("\n".join(status_lines(report)))


# ----------------------------------------------------------------------------- commands
def init_main(argv: list[str]) -> int:
    def extra(p):
        p.add_argument("--adapter", help="the adapter served now (default: none, the bare base model)")
        p.add_argument("--base-model", default="tiny", help="base model: tiny or a local HF directory (default: tiny)")

    def work(registry, tgt, args):
        from medgo.config import ModelConfig
        from medgo.model.loading import resolve_tokenizer_path
        from medgo.model.tokenizer import load_tokenizer
        from medgo.serve.model import base_version

        cfg = ModelConfig(base_model=args.base_model)
        fingerprint = base_version(cfg, load_tokenizer(resolve_tokenizer_path(cfg)))
        row = registry.ensure_production(model=tgt.model, base_model=args.base_model, base_fingerprint=fingerprint, adapter_dir=args.adapter, actor=actor())
        print(f"{tgt.model}: production is {row['version']} ({row['adapter_dir'] or 'the bare base model'})")
        sync(registry, tgt)

    return run(work, argv, "init", "register the model served now as the production version (when there is none) and publish it", extra)


def status_main(argv: list[str]) -> int:
    def extra(p):
        p.add_argument("--json", action="store_true", help="print JSON")

    def work(registry, tgt, args):
        report = status_rows(registry, tgt)
        print(json.dumps(report, ensure_ascii=False, indent=2)) if args.json else print_status(report)

    return run(work, argv, "status", "per live version: answers served, judgements, acceptance with a 95% interval; the auto-rollback verdict", extra)


def _version_and_reason(p) -> None:
    p.add_argument("version", help="registry version, e.g. medgo-tiny-r0003")
    p.add_argument("--reason", default="", help="why (written to the audit table)")


def promote_main(argv: list[str]) -> int:
    def work(registry, tgt, args):
        row = promote(registry, args.version, actor=actor(), reason=args.reason or "promoted")
        print(f"{row['version']} is production")
        sync(registry, tgt)

    return run(work, argv, "promote", "make a canary (or a retired version) production; the old production is retired", _version_and_reason)


def rollback_main(argv: list[str]) -> int:
    def work(registry, tgt, args):
        live = registry.rollback(args.version, actor=actor(), reason=args.reason or "rolled back", source="medgo flywheel rollback")
        print(f"{args.version} is rejected; production is {live['production']['version']}")
        sync(registry, tgt)

    return run(work, argv, "rollback", "reject a canary, or reject the production version and restore its parent", _version_and_reason)


def share_main(argv: list[str]) -> int:
    def extra(p):
        p.add_argument("share", type=float, help="share of conversations the canary serves, 0..1")
        p.add_argument("--reason", default="", help="why (written to the audit table)")

    def work(registry, tgt, args):
        row = set_share(registry, tgt.model, args.share, actor=actor(), reason=args.reason or f"share {args.share}")
        print(f"{row['version']} serves {row['canary_share']:.0%} of conversations")
        sync(registry, tgt)

    return run(work, argv, "share", "change the share of conversations the canary serves", extra)


def check_main(argv: list[str]) -> int:
    def work(registry, tgt, args):
        result = check(registry, tgt.model, tgt.control.auto_rollback)
        print(f"rolled back {result['rolled_back']}: {result['why']}" if result["rolled_back"] else f"no rollback: {result['why']}")
        if result["rolled_back"]:
            sync(registry, tgt)

    return run(work, argv, "check", "the auto-rollback rule: roll back a canary significantly worse than production")


def publish_main(argv: list[str]) -> int:
    def work(registry, tgt, args):
        if not tgt.control.publish:
            raise RegistryError("publish with --no-publish does nothing")
        sync(registry, tgt)

    return run(work, argv, "publish", "push the registry's live versions to the running application (after a restart)")
