"""Fault drills, one mechanism for every training stage (``debug.fail_at_step``, ``debug.stop_at_step``).

    drill = FaultDrill(cfg.debug, run_dir)
    drill.after_step(step, rank, world_size)   # the last rank dies once at fail_at_step
    if drill.stops_at(step): ...               # stop cleanly, with a checkpoint

The pre-training loop calls it directly; the TRL stages pass :class:`FaultDrillCallback` to their
trainer.  A marker file in the run directory makes the failure happen once, so the restarted
worker group goes on from its last checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import TrainerCallback

from medgo.config import ConfigError
from medgo.train.config import DebugSettings


def check_drill(debug: DebugSettings, total_steps: int) -> None:
    """Driver side: a drill must fall inside the run."""
    for key in ("fail_at_step", "stop_at_step"):
        value = getattr(debug, key)
        if value is not None and value >= total_steps:
            raise ConfigError(f"debug.{key} ({value}) must be below the run's {total_steps} steps")


class FaultDrill:
    """Kills the last worker once at ``fail_at_step``; says when to stop at ``stop_at_step``."""

    def __init__(self, debug: DebugSettings, marker_dir: str | Path):
        self.fail_at, self.stop_at = debug.fail_at_step, debug.stop_at_step
        self.marker_dir = Path(marker_dir)

    def after_step(self, step: int, rank: int, world_size: int) -> None:
        if step != self.fail_at or rank != world_size - 1:
            return
        marker = self.marker_dir / f".fault-injected-step-{step}"
        if marker.exists():
            return
        marker.touch()
        print(f"[rank {rank}] debug.fail_at_step={step}: killing this worker", flush=True)
        os._exit(1)

    def stops_at(self, step: int) -> bool:
        return step == self.stop_at


class FaultDrillCallback(TrainerCallback):
    """The drill inside a Hugging Face trainer: at ``stop_at_step`` it saves a checkpoint and stops."""

    def __init__(self, drill: FaultDrill):
        self.drill = drill

    def on_step_end(self, args, state, control, **kwargs):
        self.drill.after_step(state.global_step, args.process_index, args.world_size)
        if self.drill.stops_at(state.global_step):
            control.should_save = control.should_training_stop = True
        return control
