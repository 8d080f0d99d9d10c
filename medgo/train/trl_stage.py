"""What the TRL stages (SFT, DPO, KTO) share: training arguments, steps, distributed set-up, resume and the adapter.

A TRL stage composes these functions; nothing here knows which trainer it drives::

    # driver
    steps = total_steps(n_records, cfg.train, cfg.ray.num_workers)
    validate_trainer_args(trl.SFTConfig, cfg)                        # before any worker starts
    result = launcher.fit(train_loop, cfg, launcher.loop_config(cfg, base, data=...))
    finish_run(cfg)                                                  # loss_curve.png, last metrics line

    # worker (inside train_loop)
    w, args = start_trl_worker(config, SFTConfig, trl.SFTConfig)     # shared set-up + the trainer's arguments
    model = load_model(w.model, w.tokenizer)                         # after the arguments: ZeRO-3 loads partitioned
    with plain_print():                                              # no bytecode in the logs from datasets hashing
        trainer = trl.SFTTrainer(model, args, train_dataset=..., processing_class=w.tokenizer,
                                 peft_config=w.cfg.lora.peft(), callbacks=stage_callbacks(w.cfg, w.run_dir, w.run_storage))
    outcome = train_and_save(trainer, w.run_dir / "adapter", w.run_storage)  # resumes from the newest checkpoint

The Hugging Face Trainer owns the loop: every ``train`` key reaches TRL's config class unchanged
(:func:`trainer_kwargs`), DeepSpeed comes in through its ``deepspeed`` dict
(:func:`medgo.train.deepspeed_config.deepspeed_config` with Hugging Face's ``"auto"`` values).
Every ``save_steps`` each rank's checkpoint (``checkpoint-N``: DeepSpeed shards of the trainable
parameters and optimizer, trainer state, RNG state) is reported to Ray Train, which merges the ranks'
files into ``checkpoint_step_<N>`` in storage; a restarted worker group resumes from it with HF's
``resume_from_checkpoint``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from medgo.config import ConfigError
from medgo.train.callbacks import HF_CHECKPOINT
from medgo.train.checkpoint import checkpoint_to_restore
from medgo.train.config import TrainArguments
from medgo.train.deepspeed_config import deepspeed_config
from medgo.train.metrics import plot_loss_curve, read_metrics
from medgo.train.worker import Worker, start_worker

FIXED_ARGUMENTS = {"save_strategy": "steps", "report_to": "none", "disable_tqdm": True, "dataloader_num_workers": 0}
"""Training arguments the layer sets itself: checkpoints every ``save_steps`` go to Ray Train, metrics to ``metrics.jsonl``."""


# ----------------------------------------------------------------------------- arguments


def trainer_kwargs(cfg, *, output_dir: str, dtype: torch.dtype, use_gpu: bool, deepspeed: bool = True) -> dict:
    """Keyword arguments of TRL's config class: every ``train`` key unchanged, precision from ``model.dtype``, the DeepSpeed dict."""
    train = cfg.train.model_dump()
    return {
        **train,
        **FIXED_ARGUMENTS,
        "max_steps": train["max_steps"] or -1,
        "output_dir": output_dir,
        "bf16": dtype == torch.bfloat16,
        "fp16": dtype == torch.float16,
        "data_seed": cfg.train.seed,
        "deepspeed": deepspeed_config(cfg.deepspeed, cfg.train, dtype=dtype, use_gpu=use_gpu) if deepspeed else None,
        "accelerator_config": {"use_configured_state": deepspeed},
    }


def validate_trainer_args(trl_config_cls: type, cfg, **fixed) -> None:
    """Driver side: build TRL's config class from ``train`` (without DeepSpeed) so a value it refuses fails before any worker starts."""
    with tempfile.TemporaryDirectory(prefix="medgo-args-") as tmp:
        try:
            trl_config_cls(**trainer_kwargs(cfg, output_dir=tmp, dtype=torch.float32, use_gpu=False, deepspeed=False), **fixed)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"section 'train': {trl_config_cls.__name__} refuses it: {exc}") from None


# ----------------------------------------------------------------------------- driver side


def check_steps(records: int, train: TrainArguments, num_workers: int, what: str = "records") -> int:
    """Optimizer steps of one epoch; ConfigError when the data cannot fill a single step."""
    micro, accum = train.per_device_train_batch_size, train.gradient_accumulation_steps
    steps = math.ceil(records / (micro * num_workers)) // accum
    if records < num_workers or steps < 1:
        raise ConfigError(
            f"train.per_device_train_batch_size ({micro}) x train.gradient_accumulation_steps ({accum}) x "
            f"ray.num_workers ({num_workers}) = {micro * accum * num_workers} {what} per optimizer step, but the data has {records}: lower one of them"
        )
    return steps


def total_steps(records: int, train: TrainArguments, num_workers: int) -> int:
    """Optimizer steps the run will take (``max_steps`` or ``num_train_epochs`` passes)."""
    return train.max_steps or max(1, math.ceil(train.num_train_epochs * check_steps(records, train, num_workers)))


def finish_run(cfg) -> dict:
    """Driver side after training: ``loss_curve.png`` from ``metrics.jsonl``; returns the last metrics line."""
    run_dir = cfg.run_dir()
    plot_loss_curve(run_dir / "metrics.jsonl", run_dir / "loss_curve.png", title=f"{cfg.stage} {cfg.run_name}")
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]
    return rows[-1] if rows else {}


# ----------------------------------------------------------------------------- worker side


def configure_distributed(use_gpu: bool) -> None:
    """Tell Accelerate about Ray Train's process group before the training arguments are built.

    On the CPU Accelerate would otherwise see DeepSpeed without a backend and count one process
    per worker; declaring the state (``gloo`` on CPU, ``nccl`` on GPU) gives it the real world
    size.  :func:`trainer_kwargs` sets ``use_configured_state`` so HF keeps this state.
    """
    from accelerate import PartialState

    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    try:
        PartialState(backend="nccl" if use_gpu else "gloo")
    finally:
        del os.environ["ACCELERATE_USE_DEEPSPEED"]


@contextmanager
def plain_print():
    """Python's own ``print`` for a block of worker code.

    Ray Train copies every ``print`` to its log, even one aimed at a redirected ``sys.stdout``;
    dill, which ``datasets`` uses to fingerprint a ``map``, disassembles functions that way, so
    building a TRL trainer would log pages of bytecode.
    """
    import builtins

    try:
        from ray.train.v2._internal.logging.patch_print import _original_print
    except ImportError:  # another Ray version: leave print alone
        yield
        return
    saved, builtins.print = builtins.print, _original_print
    try:
        yield
    finally:
        builtins.print = saved


def score_labelled_positions_only() -> bool:
    """Make TRL's fused LM head project only the positions that carry a label on the CPU too; True once it does.

    The trainers compute their loss through a fused head (``trl.trainer.utils.add_fused_lm_head``)
    that, on a device with Triton, projects only the labelled positions onto the vocabulary.  On any
    other device it projects every position — prompt and padding included — and masks the result
    afterwards, so that a compiling backend (Neuron, XLA) sees the same tile shapes on every batch.
    Eager CPU PyTorch compiles nothing; there the same log-probabilities come from the labelled
    positions alone, and an SFT or DPO batch whose prompts are long beside their answers costs a
    fraction of the work.  A TRL without that switch is left as it is (False).
    """
    import trl.trainer.utils as trl_utils

    triton = getattr(trl_utils, "_use_triton", None)
    if triton is None:
        return False
    if not getattr(triton, "medgo_cpu_compact", False):
        def compact(device: torch.device) -> bool:
            return device.type == "cpu" or triton(device)

        compact.medgo_cpu_compact = True
        trl_utils._use_triton = compact
    return True


def start_trl_worker(config: dict, config_cls: type, trl_config_cls: type, **fixed) -> tuple[Worker, object]:
    """The shared worker set-up, Accelerate's process group, and the trainer's arguments (before the model: ZeRO-3 loads partitioned)."""
    w = start_worker(config, config_cls)
    configure_distributed(w.use_gpu)
    score_labelled_positions_only()
    scratch = scratch_dir(w)  # HF checkpoint-N files, uploaded to Ray, then deleted
    return w, trl_config_cls(**trainer_kwargs(w.cfg, output_dir=str(scratch), dtype=w.dtype, use_gpu=w.use_gpu), **fixed)


def scratch_dir(w: Worker) -> Path:
    """An empty local directory for the trainer's ``output_dir``, named by run and rank.

    The name is the same in every attempt of the run: TRL fingerprints its data maps with the whole
    argument set, ``output_dir`` included, so a restarted worker finds the tokenized data and the
    precomputed reference columns it cached (:mod:`medgo.train.preference_stage`) only under the same name.
    """
    run = hashlib.sha256(str(w.run_dir.resolve()).encode()).hexdigest()[:8]
    scratch = Path(tempfile.gettempdir()) / f"medgo-{w.cfg.stage}-{w.cfg.run_name}-{run}-rank{w.rank}"
    shutil.rmtree(scratch, ignore_errors=True)  # a failed attempt's checkpoints are in Ray's storage already
    scratch.mkdir(parents=True)
    return scratch


def resume_checkpoint(run_storage: str, rank: int, world_size: int) -> str | None:
    """Local path of the HF checkpoint inside the checkpoint to restore (None on a fresh start).

    The newest complete one (:func:`medgo.train.checkpoint.checkpoint_to_restore`).  A checkpoint
    in local or shared storage is read in place; for a URI it is downloaded to a temporary
    directory kept for the life of the worker.
    """
    checkpoint = checkpoint_to_restore(run_storage, rank, world_size)
    if checkpoint is None:
        return None
    if "://" in checkpoint.path or not Path(checkpoint.path).is_dir():
        local = checkpoint.to_directory(tempfile.mkdtemp(prefix="medgo-resume-"))
    else:
        local = checkpoint.path
    return str(Path(local) / HF_CHECKPOINT)


def checkpoint_step(hf_checkpoint: str | None) -> int:
    """Global step recorded in an HF checkpoint's ``trainer_state.json`` (0 when there is none)."""
    if hf_checkpoint is None:
        return 0
    state = Path(hf_checkpoint) / "trainer_state.json"
    return int(json.loads(state.read_text(encoding="utf-8"))["global_step"]) if state.is_file() else 0


def train_and_save(trainer, adapter_dir: str | Path, run_storage: str) -> dict:
    """Train (resuming from Ray Train's checkpoint when there is one), then save the adapter; all ranks.

    ``adapter_dir`` receives a standard PEFT directory (``adapter_config.json``,
    ``adapter_model.safetensors``) and the tokenizer files, written by rank 0 and replaced
    atomically; a model trained without an adapter is saved there as a Hugging Face model
    directory.  Returns ``{"step", "start_step", "train_loss"}``.
    """
    resume = resume_checkpoint(run_storage, trainer.args.process_index, trainer.args.world_size)
    start = checkpoint_step(resume)
    if resume and trainer.is_world_process_zero():
        print(f"resuming from step {start}: {resume}", flush=True)
    output = trainer.train(resume_from_checkpoint=resume)
    if trainer.state.global_step < trainer.state.max_steps:  # debug.stop_at_step: stopped like a cancelled job
        return {"step": trainer.state.global_step, "start_step": start, "stopped": True}
    save_adapter(trainer, adapter_dir)
    shutil.rmtree(trainer.args.output_dir, ignore_errors=True)  # the scratch directory; checkpoints live in Ray's storage
    return {"step": trainer.state.global_step, "start_step": start, "train_loss": float(output.training_loss)}


def save_adapter(trainer, adapter_dir: str | Path) -> Path:
    """Collective: gather the trainable weights (ZeRO-3) and write the PEFT adapter (or the whole model) + tokenizer on rank 0."""
    adapter_dir = Path(adapter_dir)
    tmp = adapter_dir.with_name(f".{adapter_dir.name}.tmp")
    if trainer.is_world_process_zero():
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    if trainer.is_world_process_zero():
        trainer.processing_class.save_pretrained(str(tmp))
        shutil.rmtree(adapter_dir, ignore_errors=True)
        os.replace(tmp, adapter_dir)
    trainer.accelerator.wait_for_everyone()
    return adapter_dir
