"""Shared glue for the TRL stages (SFT, DPO): LoRA, training arguments, Ray Train, checkpoints, outputs.

A TRL stage composes these functions; nothing here knows which trainer it drives::

    # driver
    base = materialise_base(cfg.model, run_dir)              # tiny -> <run dir>/base, adapter -> merged
    check_steps(n_records, cfg.train, cfg.ray.num_workers)
    result = fit_finetune(train_fn, loop_config, cfg.ray, cfg.checkpoint, run_name=..., storage=storage_root(...))
    finish_run(run_dir, "sft", cfg.run_name)                 # loss_curve.png, last metrics line

    # worker (inside train_fn)
    w = start_worker(config, SFTConfig, "sft")              # tokenizer, process group, shared arguments, callbacks
    args = trl.SFTConfig(**w.training_kwargs, max_length=...)
    model = load_base(w.base, w.tokenizer)                   # after the args: ZeRO-3 loads partitioned
    with plain_print():                                      # no bytecode in the logs from datasets hashing
        trainer = trl.SFTTrainer(model, args, train_dataset=..., processing_class=w.tokenizer,
                                 peft_config=lora_config(w.cfg.lora), callbacks=w.callbacks)
    outcome = train_and_save(trainer, w.run_dir / "adapter", w.run_storage)  # resumes from the newest checkpoint

The Hugging Face Trainer owns the loop: DeepSpeed comes in through ``TrainingArguments(deepspeed=dict)``
(ZeRO sections from :mod:`medgo.train.deepspeed_config`, batch sizes, optimizer hyper-parameters and
precision as HF's ``"auto"`` values, so they are written once, in the training arguments).  Every
``save_steps`` each rank's checkpoint (``checkpoint-N``: DeepSpeed shards of the trainable
parameters and optimizer, trainer state, RNG state) is reported to Ray Train, which merges the ranks'
files into ``checkpoint_step_<N>`` in storage; a restarted worker group resumes from it with HF's
``resume_from_checkpoint``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from transformers import TrainerCallback

from medgo import console
from medgo.config import ConfigError, ModelConfig, RayConfig, Section, StageConfig
from medgo.train.checkpoint import CHECKPOINT_PREFIX, checkpoint_to_restore, mark_complete
from medgo.train.deepspeed_config import zero_section
from medgo.train.metrics import MetricsSink, plot_loss_curve, read_metrics
from medgo.train.settings import DeepSpeedSettings

QWEN2_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
HF_CHECKPOINT = "checkpoint"
"""Sub-directory of a Ray Train checkpoint that holds the Hugging Face ``checkpoint-N`` files."""


# ----------------------------------------------------------------------------- config sections


class LoraSettings(Section):
    """The LoRA adapter (defaults: MedGo's SFT — rank 16, alpha 8, dropout 0.05, every Qwen2 projection)."""

    r: int = Field(16, gt=0)
    """Rank of the low-rank update."""
    alpha: float = Field(8, gt=0)
    """Scale: the update is multiplied by ``alpha / r``."""
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(QWEN2_LORA_TARGETS), min_length=1)
    """Module names (suffixes) that receive an adapter: Qwen2's attention and MLP projections."""
    bias: Literal["none", "all", "lora_only"] = "none"
    modules_to_save: list[str] | None = None
    """Modules trained in full and saved with the adapter (e.g. ``lm_head`` after adding tokens)."""


class FinetuneTrain(Section):
    """Optimizer, schedule and batch of a Hugging Face/TRL trainer (defaults: MedGo's SFT)."""

    learning_rate: float = Field(2e-5, gt=0)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts"] = "cosine"
    warmup_ratio: float = Field(0.01, ge=0, lt=1)
    """Fraction of the optimizer steps spent in linear warm-up."""
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    max_grad_norm: float = Field(1.0, ge=0)
    """Clip the global gradient norm to this value; 0 disables clipping."""
    epochs: float = Field(2.0, gt=0)
    max_steps: int | None = Field(None, gt=0)
    """Optimizer steps to train; default: ``epochs`` passes over the data."""
    micro_batch_size: int = Field(1, gt=0)
    """Sequences per worker per forward/backward pass."""
    grad_accum_steps: int = Field(4, gt=0)
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (saves memory at ~33% more compute)."""
    logging_steps: int = Field(1, gt=0)
    """Write loss, lr and grad norm to ``metrics.jsonl`` every this many optimizer steps."""


class FinetuneRay(RayConfig):
    """Ray workers for a TRL stage (two by default, so ZeRO-3 really shards)."""

    num_workers: int = Field(2, gt=0)
    storage_path: str | None = None
    """Where Ray Train keeps checkpoints: a local directory or a pyarrow URI; default: ``output_dir``."""


class FinetuneCheckpoint(Section):
    """Checkpoints reported to Ray Train (resume after a worker failure or a re-run)."""

    every_steps: int = Field(50, gt=0)
    """Save and report a checkpoint from all ranks every this many optimizer steps."""
    keep_last: int = Field(2, gt=0)
    max_failures: int = Field(3, ge=-1)
    """Worker-group restarts from the last reported checkpoint before the run fails (-1: unlimited)."""


class FinetuneConfig(StageConfig):
    """The sections every TRL stage's config has; a stage adds its ``data`` section and its extras."""

    model: ModelConfig = ModelConfig()
    lora: LoraSettings = LoraSettings()
    train: FinetuneTrain = FinetuneTrain()
    deepspeed: DeepSpeedSettings = DeepSpeedSettings()
    ray: FinetuneRay = FinetuneRay()
    checkpoint: FinetuneCheckpoint = FinetuneCheckpoint()
    tensorboard: bool = False
    """Also write the metrics to ``<run dir>/tensorboard``."""
    seed: int = Field(0, ge=0)


# ----------------------------------------------------------------------------- LoRA, DeepSpeed, arguments


def lora_config(lora: LoraSettings):
    """The ``peft.LoraConfig`` for a causal LM."""
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias=lora.bias,
        modules_to_save=list(lora.modules_to_save) if lora.modules_to_save else None,
        task_type="CAUSAL_LM",
    )


def hf_deepspeed_config(ds: DeepSpeedSettings, use_gpu: bool) -> dict:
    """DeepSpeed dict for ``TrainingArguments(deepspeed=...)``: ZeRO from ``ds``, the rest ``"auto"``.

    HF fills the ``"auto"`` values from the training arguments (batch sizes, clipping, AdamW
    hyper-parameters, bf16/fp16) and builds its own LR scheduler around DeepSpeed's AdamW.
    ZeRO-3 gathers 16-bit weights when a model is saved, so the adapter file is complete.
    """
    zero = zero_section(ds)
    if ds.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    adam = {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"}
    if not use_gpu and not ds.offload_optimizer:
        adam["torch_adam"] = True  # FusedAdam needs CUDA
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
        "optimizer": {"type": "AdamW", "params": adam},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def training_kwargs(
    train: FinetuneTrain,
    ds: DeepSpeedSettings | None,
    *,
    output_dir: str,
    dtype: torch.dtype,
    use_gpu: bool,
    seed: int,
    save_steps: int,
) -> dict:
    """Keyword arguments shared by ``transformers.TrainingArguments`` and TRL's ``SFTConfig``/``DPOConfig``.

    ``ds=None`` trains without DeepSpeed (plain DDP).  Add the trainer's own keys (``max_length``,
    ``assistant_only_loss``, ``beta``...) to the returned dict.  With DeepSpeed, call
    :func:`configure_distributed` on the worker before building the arguments.
    """
    return {
        "output_dir": output_dir,
        "per_device_train_batch_size": train.micro_batch_size,
        "gradient_accumulation_steps": train.grad_accum_steps,
        "num_train_epochs": train.epochs,
        "max_steps": train.max_steps or -1,
        "learning_rate": train.learning_rate,
        "lr_scheduler_type": train.lr_scheduler,
        "warmup_steps": train.warmup_ratio,  # a float below 1 is a ratio of the total steps
        "weight_decay": train.weight_decay,
        "adam_beta1": train.betas[0],
        "adam_beta2": train.betas[1],
        "adam_epsilon": train.eps,
        "max_grad_norm": train.max_grad_norm,
        "bf16": dtype == torch.bfloat16,
        "fp16": dtype == torch.float16,
        "activation_checkpointing": train.gradient_checkpointing,  # HF 5 name of gradient checkpointing
        "logging_steps": train.logging_steps,
        "save_strategy": "steps",
        "save_steps": save_steps,
        "report_to": "none",
        "disable_tqdm": True,
        "deepspeed": hf_deepspeed_config(ds, use_gpu) if ds is not None else None,
        "seed": seed,
        "data_seed": seed,
        "dataloader_num_workers": 0,
        "accelerator_config": {"use_configured_state": ds is not None},
    }


# ----------------------------------------------------------------------------- driver side


def check_steps(records: int, train: FinetuneTrain, num_workers: int, what: str = "records") -> int:
    """Optimizer steps of one epoch; ConfigError when the data cannot fill a single step."""
    per_step = train.micro_batch_size * train.grad_accum_steps * num_workers
    steps = math.ceil(records / (train.micro_batch_size * num_workers)) // train.grad_accum_steps
    if records < num_workers or steps < 1:
        raise ConfigError(
            f"train.micro_batch_size ({train.micro_batch_size}) x train.grad_accum_steps ({train.grad_accum_steps}) x "
            f"ray.num_workers ({num_workers}) = {per_step} {what} per optimizer step, but the data has {records}: lower one of them"
        )
    return steps


def total_steps(records: int, train: FinetuneTrain, num_workers: int) -> int:
    """Optimizer steps the run will take (``max_steps`` or ``epochs`` passes)."""
    return train.max_steps or max(1, math.ceil(train.epochs * check_steps(records, train, num_workers)))


def run_dir_for(output_dir: str, stage: str, run_name: str) -> Path:
    """``<output_dir>/<stage>/<run_name>``, absolute, created."""
    path = Path(output_dir).expanduser().resolve() / stage / run_name
    path.mkdir(parents=True, exist_ok=True)
    return path


def materialise_base(model_cfg: ModelConfig, run_dir: str | Path) -> ModelConfig:
    """A model config every worker (and later ``peft``) can load by path; driver side.

    * ``base_model: tiny`` -> the seeded tiny model and its tokenizer saved to ``<run dir>/base``
      (so the adapter's ``base_model_name_or_path`` names a real directory);
    * ``adapter`` set -> base + adapter merged into ``<run dir>/base`` (the new LoRA trains on top;
      for a 72B base this needs the driver to hold the model in CPU memory once);
    * otherwise the base directory itself, made absolute.
    """
    from medgo.model.loading import check_model_dir, is_tiny, load_model_and_tokenizer

    if not is_tiny(model_cfg) and not model_cfg.adapter:
        base = str(check_model_dir(model_cfg.base_model).resolve())
        tokenizer = str(Path(model_cfg.tokenizer).resolve()) if model_cfg.tokenizer else None
        return model_cfg.model_copy(update={"base_model": base, "tokenizer": tokenizer})
    out = Path(run_dir) / "base"
    model, tokenizer = load_model_and_tokenizer(model_cfg.model_copy(update={"attn_implementation": "sdpa"}))  # the driver may have no GPU
    if model_cfg.adapter:
        model = model.merge_and_unload()
    write_model_dir(model, tokenizer, out)
    return model_cfg.model_copy(update={"base_model": str(out), "tokenizer": None, "adapter": None})


def write_model_dir(model, tokenizer, out: str | Path) -> Path:
    """``save_pretrained`` of model and tokenizer into ``out``, replaced atomically."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def fit_finetune(train_fn: Callable[[dict], object], loop_config: dict, ray_cfg: RayConfig, checkpoint: FinetuneCheckpoint, *, run_name: str, storage: str):
    """Run ``train_fn`` on Ray Train workers (gloo on CPU, nccl on GPU); no Ray datasets: each worker reads files.

    ``train_fn`` finds the run's checkpoint storage in ``config["run_storage"]``.
    """
    from medgo.train.launcher import fit

    console.follow(Path(loop_config["run_dir"]) / console.PROGRESS_FILE)
    return fit(
        train_fn,
        {**loop_config, "run_storage": f"{storage}/{run_name}"},  # where each rank marks its checkpoints complete
        ray_cfg,
        run_name=run_name,
        storage=storage,
        datasets={},
        split=[],
        keep_last=checkpoint.keep_last,
        max_failures=checkpoint.max_failures,
    )


def finish_run(run_dir: str | Path, stage: str, run_name: str) -> dict:
    """Driver side after training: ``loss_curve.png`` from ``metrics.jsonl``; returns the last metrics line."""
    run_dir = Path(run_dir)
    plot_loss_curve(run_dir / "metrics.jsonl", run_dir / "loss_curve.png", title=f"{stage} {run_name}")
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]
    return rows[-1] if rows else {}


def merge_adapter(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Plain Hugging Face model directory with the adapter merged in (``export_merged``); driver side."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    return write_model_dir(merged, AutoTokenizer.from_pretrained(str(adapter_dir)), out_dir)


# ----------------------------------------------------------------------------- worker side


def scratch_dir(stage: str, run_name: str) -> str:
    """A fresh local directory for this worker's HF ``checkpoint-N`` files (uploaded to Ray, then deleted)."""
    return tempfile.mkdtemp(prefix=f"medgo-{stage}-{run_name}-")


def configure_distributed(use_gpu: bool) -> None:
    """Tell Accelerate about Ray Train's process group before the training arguments are built.

    On the CPU Accelerate would otherwise see DeepSpeed without a backend and count one process
    per worker; declaring the state (``gloo`` on CPU, ``nccl`` on GPU) gives it the real world
    size.  :func:`training_kwargs` sets ``use_configured_state`` so HF keeps this state.
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


def load_base(model_cfg: ModelConfig, tokenizer):
    """The base model on this worker.

    Build the training arguments first: a ``TrainingArguments`` with a ZeRO-3 ``deepspeed`` dict
    makes ``from_pretrained`` load straight into partitions (``deepspeed.zero.Init``).
    """
    from medgo.model.loading import load_model

    return load_model(model_cfg, tokenizer)


@dataclass
class StageWorker:
    """What a TRL stage's ``train_loop`` starts from on every Ray Train worker (see :func:`start_worker`)."""

    cfg: FinetuneConfig
    base: ModelConfig
    """The base every worker loads by path (with the adapter to continue, when there is one)."""
    tokenizer: object
    use_gpu: bool
    run_dir: Path
    run_storage: str
    training_kwargs: dict
    """:func:`training_kwargs` for this stage; add the trainer's own keys and build its arguments."""
    callbacks: list


def start_worker(config: dict, config_cls: type[FinetuneConfig], stage: str) -> StageWorker:
    """Parse the loop config, load the tokenizer, set up Accelerate's process group, prepare the arguments."""
    from medgo.model.loading import resolve_dtype, resolve_tokenizer_path
    from medgo.model.tokenizer import load_tokenizer

    console.quiet_library_warnings()
    cfg, base = config_cls.model_validate(config["cfg"]), ModelConfig.model_validate(config["base"])
    run_dir, run_storage = Path(config["run_dir"]), config["run_storage"]
    use_gpu = torch.cuda.is_available()
    configure_distributed(use_gpu)
    kwargs = training_kwargs(cfg.train, cfg.deepspeed, output_dir=scratch_dir(stage, cfg.run_name), dtype=resolve_dtype(cfg.model.dtype),
                             use_gpu=use_gpu, seed=cfg.seed, save_steps=cfg.checkpoint.every_steps)  # fmt: skip
    callbacks = stage_callbacks(run_dir, stage, cfg.run_name, run_storage, tensorboard=cfg.tensorboard)
    return StageWorker(cfg, base, load_tokenizer(resolve_tokenizer_path(base)), use_gpu, run_dir, run_storage, kwargs, callbacks)


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


def stage_callbacks(run_dir: str | Path, stage: str, run_name: str, run_storage: str, tensorboard: bool = False, ray_metrics: bool = False) -> list:
    """The callbacks every TRL stage passes to its trainer: metrics on rank 0, checkpoints to Ray Train."""
    return [MetricsLog(run_dir, stage, run_name, tensorboard, ray_metrics), RayTrainReport(run_storage)]


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
    atomically.  Returns ``{"step", "start_step", "train_loss"}``.
    """
    resume = resume_checkpoint(run_storage, trainer.args.process_index, trainer.args.world_size)
    start = checkpoint_step(resume)
    if resume and trainer.is_world_process_zero():
        print(f"resuming from step {start}: {resume}", flush=True)
    output = trainer.train(resume_from_checkpoint=resume)
    save_adapter(trainer, adapter_dir)
    shutil.rmtree(trainer.args.output_dir, ignore_errors=True)  # the scratch directory; checkpoints live in Ray's storage
    return {"step": trainer.state.global_step, "start_step": start, "train_loss": float(output.training_loss)}


def save_adapter(trainer, adapter_dir: str | Path) -> Path:
    """Collective: gather the trainable weights (ZeRO-3) and write the PEFT adapter + tokenizer on rank 0."""
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


class FailAt(TrainerCallback):
    """Fault injection for tests and drills: the last rank dies (``os._exit``) at the end of ``step``.

    A marker file in ``marker_dir`` makes it happen once, so the restarted worker group goes on.
    """

    def __init__(self, step: int, marker_dir: str | Path):
        self.step, self.marker = step, Path(marker_dir) / f".fault-injected-step-{step}"

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step != self.step or args.process_index != args.world_size - 1 or self.marker.exists():
            return
        self.marker.touch()
        print(f"[rank {args.process_index}] debug.fail_at_step={self.step}: killing this worker", flush=True)
        os._exit(1)
