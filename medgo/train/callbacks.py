"""The Hugging Face trainer callbacks every TRL stage passes: metrics on rank 0, checkpoints to Ray Train, the fault drill.

    callbacks = stage_callbacks(cfg, run_dir, run_storage)
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

from transformers import TrainerCallback

from medgo import console
from medgo.train.checkpoint import CHECKPOINT_PREFIX, mark_complete
from medgo.train.faults import FaultDrill, FaultDrillCallback
from medgo.train.metrics import MetricsSink

HF_CHECKPOINT = "checkpoint"
"""Sub-directory of a Ray Train checkpoint that holds the Hugging Face ``checkpoint-N`` files."""


class RayTrainReport(TrainerCallback):
    """After each HF save, report this rank's ``checkpoint-N`` to Ray Train.

    Ray merges the ranks' files into ``checkpoint_step_<N>/checkpoint/`` in storage; the local
    copy is deleted.  Every rank reports at every save (Ray's report is a barrier).
    """

    def __init__(self, run_storage: str):
        self.run_storage, self.last_log = run_storage, {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.last_log = {k: v for k, v in (logs or {}).items() if _is_number(v)}

    def on_save(self, args, state, control, **kwargs):
        import ray.train

        step, name = state.global_step, f"{CHECKPOINT_PREFIX}{state.global_step:08d}"
        local = Path(args.output_dir) / f"checkpoint-{step}"
        with tempfile.TemporaryDirectory(prefix="medgo-report-") as tmp:
            if local.is_dir():  # a rank that wrote nothing reports no files (Ray needs one from any rank)
                shutil.move(str(local), Path(tmp) / HF_CHECKPOINT)
            ray.train.report(
                {"step": step, **self.last_log},
                checkpoint=ray.train.Checkpoint.from_directory(tmp) if any(Path(tmp).iterdir()) else None,
                checkpoint_dir_name=name,
            )
        mark_complete(self.run_storage, name, args.process_index)


class MetricsLog(TrainerCallback):
    """On rank 0, each HF log line -> ``metrics.jsonl`` (+ TensorBoard and Ray gauges when asked).

    Keys are HF's (``loss``, ``grad_norm``, ``epoch``; TRL adds ``mean_token_accuracy``, ...) with
    ``learning_rate`` written as ``lr``; the end-of-training summary is not a step and is skipped.
    A resumed run first drops the lines logged after its checkpoint.
    """

    def __init__(self, run_dir: str | Path, stage: str, run_name: str, tensorboard: bool = False, ray_metrics: bool = False):
        self.where = (str(run_dir), stage, run_name, tensorboard, ray_metrics)
        self.sink: MetricsSink | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.sink is None:
            run_dir, stage, run_name, tb, rm = self.where
            self.sink = MetricsSink(run_dir, stage, run_name, state.global_step, tb, rm)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.sink is None or not logs or "train_runtime" in logs:
            return
        row = {("lr" if k == "learning_rate" else k): float(v) for k, v in logs.items() if _is_number(v)}
        self.sink.log(state.global_step, row)

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            console.write_progress(Path(self.where[0]) / console.PROGRESS_FILE, state.global_step, state.max_steps)

    def on_train_end(self, args, state, control, **kwargs):
        if self.sink is not None:
            self.sink.close()
            self.sink = None


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def stage_callbacks(cfg, run_dir: str | Path, run_storage: str) -> list:
    """Metrics (``metrics`` section) on rank 0, checkpoints to Ray Train, the fault drill (``debug`` section)."""
    m = cfg.metrics
    return [MetricsLog(run_dir, cfg.stage, cfg.run_name, m.tensorboard, m.ray_metrics), RayTrainReport(run_storage),
            FaultDrillCallback(FaultDrill(cfg.debug, run_dir))]  # fmt: skip
