"""The ``medgo`` command: one dispatch table onto the stage functions.

    medgo generate --config jobs/configs/generate/tiny.yaml
    medgo <stage> --config jobs/configs/<stage>/<name>.yaml [--set key.path=value ...]

``jobs/<stage>.py`` calls :func:`main` with the same arguments, for ``ray job submit``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from medgo import console
from medgo.config import ConfigError, load_config


@dataclass(frozen=True)
class Command:
    """A stage: ``config`` and ``run`` are ``module:attribute`` strings, imported on use.

    With ``config=None`` the command parses its own arguments: ``run`` is then a
    ``main(argv: list[str]) -> int`` (for tools such as ``medgo eval score`` or ``medgo plan``).
    """

    config: str | None
    run: str
    help: str
    configs: str | None = None
    """Folder under ``jobs/configs/`` holding this command's YAML files."""
    flags: dict[str, str] = field(default_factory=dict)
    """Extra ``--flag VALUE`` options, each an alias of a config key (``--output`` -> ``output_dir``)."""
    quiet: bool = False
    """A long stage: the terminal shows its progress bar and summary, the log file the rest (``--verbose``: all)."""


COMMANDS: dict[str, Command] = {
    "generate": Command("medgo.generate:GenerateConfig", "medgo.generate:run", "reply to one chat prompt", configs="generate", quiet=True),
    "corpus build": Command("medgo.corpus.config:CorpusConfig", "medgo.corpus.build:run", "clean, deduplicate, de-identify, decontaminate and pack a corpus", configs="corpus", flags={"--output": "output_dir"}, quiet=True),
    "eval run": Command("medgo.eval.config:EvalConfig", "medgo.eval.run:run", "generate, parse and score CBLUE/ClinicalQA for one or more models; write the report", configs="eval", flags={"--output": "output_dir"}, quiet=True),
    "eval predict": Command("medgo.eval.config:EvalConfig", "medgo.eval.predict:run", "answer the CBLUE test sets (--split test) and write the leaderboard submission files and zip (--format promptcblue: PromptCBLUE predictions)", configs="eval", flags={"--output": "output_dir", "--split": "cblue.split", "--format": "cblue.metric_set"}, quiet=True),
    "plan": Command("medgo.plan:PlanConfig", "medgo.plan:run", "ZeRO-3 memory per GPU, FLOPs and wall-clock time of a pre-training run", configs="plan", flags={"--output": "output_dir"}),
    "pretrain": Command("medgo.train.pretrain_config:PretrainConfig", "medgo.train.pretrain:run", "continued pre-training on Ray Train + DeepSpeed ZeRO-3", configs="pretrain", flags={"--output": "output_dir", "--corpus": "data.corpus"}, quiet=True),
    "sft": Command("medgo.train.sft_config:SFTConfig", "medgo.train.sft:run", "supervised fine-tuning with LoRA (TRL SFTTrainer) on Ray Train + DeepSpeed ZeRO-3", configs="sft", flags={"--output": "output_dir", "--base": "model.base_model"}, quiet=True),
    "dpo": Command("medgo.train.dpo_config:DPOConfig", "medgo.train.dpo:run", "DPO from doctors' feedback (TRL DPOTrainer + LoRA) on Ray Train + DeepSpeed ZeRO-3", configs="dpo", flags={"--output": "output_dir", "--base": "model.base_model", "--adapter": "model.adapter", "--feedback": "data.feedback"}, quiet=True),
    "kto": Command("medgo.train.kto_config:KTOConfig", "medgo.train.kto:run", "KTO from doctors' judgements, paired or not (TRL KTOTrainer + LoRA) on Ray Train + DeepSpeed ZeRO-3", configs="kto", flags={"--output": "output_dir", "--base": "model.base_model", "--adapter": "model.adapter", "--feedback": "data.feedback"}, quiet=True),
    "flywheel round": Command("medgo.flywheel.config:FlywheelConfig", "medgo.flywheel.round:run", "one flywheel round: new judgements -> candidate adapter -> gate -> registry (canary or rejected)", configs="flywheel", flags={"--output": "output_dir"}, quiet=True),
    "flywheel demo": Command(None, "medgo.flywheel.demo:main", "two flywheel rounds end to end against a running Serve app on the embedded default"),
    "eval score": Command(None, "medgo.eval.score_cli:main", "score existing predictions: --task TASK --gold FILE --pred FILE, or --format promptcblue"),
    "flywheel init": Command(None, "medgo.flywheel.cli:init_main", "register the model served now as the production version and publish it"),
    "flywheel status": Command(None, "medgo.flywheel.cli:status_main", "per live model version: answers, judgements, acceptance with a 95% interval"),
    "flywheel promote": Command(None, "medgo.flywheel.cli:promote_main", "make a canary production, in the running application; audited"),
    "flywheel rollback": Command(None, "medgo.flywheel.cli:rollback_main", "reject a canary or the production version (its parent returns), in the running application; audited"),
    "flywheel share": Command(None, "medgo.flywheel.cli:share_main", "change the canary's share of conversations, in the running application; audited"),
    "flywheel check": Command(None, "medgo.flywheel.cli:check_main", "the auto-rollback rule: roll back a canary significantly worse than production"),
    "flywheel publish": Command(None, "medgo.flywheel.cli:publish_main", "push the registry's live versions to the running application"),
    "serve": Command(None, "medgo.serve.cli:main", "serve on Ray Serve with an OpenAI-compatible API (serve_configs/local.yaml); 'serve export' writes de-identified feedback JSONL, 'serve purge' applies retention, 'serve keys' manages API keys"),
}


def _resolve(ref: str):
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medgo", description="MedGo on Ray: Chinese medical LLM pipeline")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, cmd in COMMANDS.items():
        *group, leaf = name.split()
        target = sub
        if group:
            if group[0] not in groups:
                gp = sub.add_parser(group[0], help=f"{group[0]} stages")
                groups[group[0]] = gp.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
            target = groups[group[0]]
        if cmd.config is None:
            p = target.add_parser(leaf, help=cmd.help, add_help=False, prefix_chars="\0")
            p.add_argument("argv", nargs=argparse.REMAINDER)
            p.set_defaults(command_name=name)
            continue
        p = target.add_parser(leaf, help=cmd.help, description=cmd.help)
        p.add_argument("--config", help="YAML config file (default: the stage's built-in defaults)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. train.lr=1e-4")
        for flag, key in cmd.flags.items():
            p.add_argument(flag, dest=f"flag_{key}", metavar=key.upper().replace(".", "_"), help=f"same as --set {key}=...")
        if cmd.quiet:
            p.add_argument("--verbose", action="store_true", help="show every log line and library warning instead of a progress bar and the log file")
        p.set_defaults(command_name=name)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors caused by the command line, a config or an input file: a one-line message, exit code 2."""
    from medgo.corpus.dataset import ShardMismatchError
    from medgo.model.loading import ModelLoadError

    return ConfigError, ModelLoadError, ShardMismatchError, FileNotFoundError


def stage_console(name: str, cfg) -> console.Console | nullcontext:
    """The running console (``medgo.quickstart``'s), or one logging to ``<output_dir>/logs/``."""
    if console.active() is not None:
        return nullcontext(console.active())
    return console.logging_to(Path(cfg.output_dir), name)


def main(argv: list[str] | None = None) -> int:
    """Run one command; set ``MEDGO_DEBUG=1`` for the full traceback of an input error."""
    args = build_parser().parse_args(argv)
    cmd = COMMANDS[args.command_name]
    try:
        if cmd.config is None:
            return int(_resolve(cmd.run)(args.argv) or 0)
        overrides = list(args.overrides)
        for key in cmd.flags.values():
            value = getattr(args, f"flag_{key}")
            if value is not None:
                overrides.append(f"{key}={value}")
        cfg = load_config(_resolve(cmd.config), args.config, overrides)
        if not cmd.quiet:
            _resolve(cmd.run)(cfg)
            return 0
        if args.verbose:
            os.environ[console.VERBOSE_ENV] = "1"
        run = _resolve(cmd.run)  # imported before the stage starts: its libraries' warning filters come first
        with stage_console(args.command_name, cfg) as con, con.stage(args.command_name):
            run(cfg)
        return 0
    except _user_errors() as exc:
        if os.environ.get("MEDGO_DEBUG"):
            raise
        print(f"medgo {args.command_name}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
