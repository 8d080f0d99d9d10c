"""Continued pre-training (next-token prediction) on Ray Train with DeepSpeed ZeRO-3.

    medgo pretrain --config jobs/configs/pretrain/tiny.yaml [--corpus DIR] [--output DIR]
    ray job submit --working-dir . -- python jobs/pretrain.py --config jobs/configs/pretrain/tiny.yaml \
        --set data.corpus=/abs/runs/corpus/tiny --set output_dir=/abs/runs

With ``ray job submit`` the job runs in a copy of the working directory, so give absolute (or
shared-storage) paths for the corpus and ``output_dir``; on a multi-node cluster they must be
visible from every node (NFS; ``ray.storage_path`` may also be a pyarrow URI such as s3://).
A head started with ``ray start --head`` uses token authentication: export
``RAY_AUTH_MODE=token`` (the token is read from ``~/.ray/auth_token``) before ``ray job submit``.

Everything is checked before a worker starts: the corpus manifest, the tokenizer fingerprint of
the shards against the model's tokenizer, the block size against the model's context, and that
``micro_batch_size x grad_accum_steps x num_workers`` can be filled from the training split.
Running the same command again (same ``run_name`` and storage) resumes from the newest
checkpoint; a worker that dies is replaced and the run continues from its last checkpoint
(``checkpoint.max_failures``).  The run directory ``<output_dir>/pretrain/<run_name>`` receives
``config.yaml``, ``metrics.jsonl``, ``tensorboard/``, ``loss_curve.png``, Ray Train's
checkpoints (unless ``ray.storage_path`` puts them elsewhere) and ``model/``, a plain Hugging
Face directory.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import ray
import ray.train
import torch
from pydantic import Field

from medgo import console
from medgo.config import ConfigError, ModelConfig, RayConfig, Section, StageConfig, save_config
from medgo.model.loading import model_config_for, resolve_dtype, resolve_tokenizer_path
from medgo.model.tokenizer import load_tokenizer, tokenizer_fingerprint
from medgo.ray_utils import init_ray
from medgo.train import checkpoint as ckpt
from medgo.train.data import BlockStream, CorpusInfo, collate_blocks, corpus_info, open_shards, validation_blocks
from medgo.train.deepspeed_config import deepspeed_config
from medgo.train.flops import Architecture, peak_flops
from medgo.train.launcher import all_gather, all_reduce_sum, build_engine, fit, storage_root
from medgo.train.metrics import MetricsSink, plot_loss_curve, read_metrics
from medgo.train.settings import BatchSettings, CheckpointSettings, DebugSettings, DeepSpeedSettings, MetricsSettings, OptimizerSettings

STAGE = "pretrain"


class PretrainData(Section):
    """The packed corpus to train on."""

    corpus: str = "runs/corpus/tiny"
    """Corpus directory built by ``medgo corpus`` (``manifest.json`` + ``shards/{train,validation}``)."""


class PretrainRay(RayConfig):
    """Ray workers for pre-training (two by default, so ZeRO-3 really shards)."""

    num_workers: int = Field(2, gt=0)
    storage_path: str | None = None
    """Where Ray Train keeps checkpoints: a local directory or a pyarrow URI (s3://, gs://, hdfs://); default: ``output_dir``."""


class PretrainConfig(StageConfig):
    """Continued pre-training: model, data, Ray workers, batch, optimizer, DeepSpeed, checkpoints, metrics."""

    model: ModelConfig = ModelConfig()
    data: PretrainData = PretrainData()
    ray: PretrainRay = PretrainRay()
    batch: BatchSettings = BatchSettings()
    optim: OptimizerSettings = OptimizerSettings()
    deepspeed: DeepSpeedSettings = DeepSpeedSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    metrics: MetricsSettings = MetricsSettings()
    debug: DebugSettings = DebugSettings()
    seed: int = Field(0, ge=0)


@dataclass
class RunPlan:
    """What the driver worked out before starting workers (passed to every worker)."""

    run_dir: str
    storage: str
    total_steps: int
    steps_per_epoch: int
    block_size: int
    flops_per_token: float
    tokenizer_fingerprint: str
    resume_step: int


@dataclass
class PretrainResult:
    run_dir: Path
    model_dir: Path | None
    """The exported Hugging Face directory (None when the run stopped early)."""
    steps: int
    metrics: dict
    """The last line of metrics.jsonl."""
    resumed_from: int
    """Step of the checkpoint this invocation started from (0: a fresh run)."""
    last_attempt_start: int
    """Step the last worker-group attempt started at (differs from ``resumed_from`` after a restore)."""
    nodes: list[str]
    """Ray node id of each worker, by rank."""


# ----------------------------------------------------------------------------- driver side


def steps_for(cfg: PretrainConfig, info: CorpusInfo) -> tuple[int, int]:
    """``(total_steps, steps_per_epoch)``; ConfigError when one step cannot be filled."""
    workers, micro, accum = cfg.ray.num_workers, cfg.batch.micro_batch_size, cfg.batch.grad_accum_steps
    micro_batches = info.train_blocks // workers // micro  # Ray's equal split, then drop_last
    if micro_batches < accum:
        raise ConfigError(
            f"batch.micro_batch_size ({micro}) x batch.grad_accum_steps ({accum}) x ray.num_workers ({workers}) = "
            f"{micro * accum * workers} blocks per step, but {info.path} has {info.train_blocks} training blocks "
            f"({info.train_blocks // workers} per worker): lower one of them"
        )
    steps_per_epoch = micro_batches // accum
    total = cfg.batch.max_steps or max(1, int(cfg.batch.epochs * micro_batches) // accum)
    return total, steps_per_epoch


def check_debug(cfg: PretrainConfig, total: int) -> None:
    for key in ("fail_at_step", "stop_at_step"):
        value = getattr(cfg.debug, key)
        if value is not None and value >= total:
            raise ConfigError(f"debug.{key} ({value}) must be below the run's {total} steps")


def check_resume(cfg: PretrainConfig, storage: str) -> int:
    """Step of the checkpoint this run will resume from (0 for a fresh run)."""
    state = ckpt.latest_checkpoint_state(f"{storage}/{cfg.run_name}")
    if state is None:
        return 0
    if state.world_size != cfg.ray.num_workers:
        raise ConfigError(
            f"run '{cfg.run_name}' was checkpointed with {state.world_size} workers at step {state.step}: "
            f"resume it with ray.num_workers={state.world_size} or choose a new run_name"
        )
    return state.step


def prepare(cfg: PretrainConfig) -> RunPlan:
    """Every check that can fail, before any worker starts; writes the resolved config."""
    tokenizer = load_tokenizer(resolve_tokenizer_path(cfg.model))
    fingerprint = tokenizer_fingerprint(tokenizer)
    info = corpus_info(cfg.data.corpus, expected_fingerprint=fingerprint)
    model_config = model_config_for(cfg.model, tokenizer)
    if info.block_size > model_config.max_position_embeddings:
        raise ConfigError(
            f"corpus block_size {info.block_size} exceeds the model's max_position_embeddings "
            f"{model_config.max_position_embeddings} (model.tiny.max_position_embeddings for the tiny model)"
        )
    total, per_epoch = steps_for(cfg, info)
    check_debug(cfg, total)
    storage = storage_root(cfg.ray.storage_path or cfg.output_dir, STAGE)
    resume_step = check_resume(cfg, storage)
    run_dir = Path(cfg.output_dir).expanduser().resolve() / STAGE / cfg.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    arch = Architecture.from_hf(model_config)
    return RunPlan(str(run_dir), storage, total, per_epoch, info.block_size, arch.train_flops_per_token(info.block_size), fingerprint, resume_step)


def run(cfg: PretrainConfig) -> PretrainResult:
    plan = prepare(cfg)
    print(f"pretrain '{cfg.run_name}': {plan.total_steps} steps ({plan.steps_per_epoch} per epoch) on {cfg.ray.num_workers} workers"
          + (f", resuming at step {plan.resume_step}" if plan.resume_step else ""), flush=True)
    init_ray(cfg.ray.address)
    console.follow(Path(plan.run_dir) / console.PROGRESS_FILE)
    train = open_shards(cfg.data.corpus, "train", expected_fingerprint=plan.tokenizer_fingerprint)
    held_out = validation_blocks(cfg.data.corpus, cfg.metrics.eval_blocks)
    result = fit(
        train_loop,
        {"cfg": cfg.model_dump(mode="json"), "plan": asdict(plan), "validation": held_out},
        cfg.ray,
        run_name=cfg.run_name,
        storage=plan.storage,
        datasets={"train": train},
        split=["train"],
        keep_last=cfg.checkpoint.keep_last,
        max_failures=cfg.checkpoint.max_failures,
    )
    return finish(cfg, plan, result)


def finish(cfg: PretrainConfig, plan: RunPlan, result) -> PretrainResult:
    run_dir = Path(plan.run_dir)
    rows = read_metrics(run_dir / "metrics.jsonl")
    plot_loss_curve(run_dir / "metrics.jsonl", run_dir / "loss_curve.png", title=f"pretrain {cfg.run_name}")
    outcome = result.return_value or {}
    model_dir = run_dir / "model" if outcome.get("exported") else None
    last = rows[-1] if rows else {}
    console.summary(f"pretrain '{cfg.run_name}': stopped at step {outcome.get('step')}; loss {last.get('loss')}; "
          f"model {model_dir or '(not exported)'}; run dir {run_dir}")
    return PretrainResult(run_dir, model_dir, int(outcome.get("step", 0)), last, plan.resume_step, outcome.get("start_step", 0), outcome.get("nodes", []))


# ----------------------------------------------------------------------------- worker side


def train_loop(config: dict) -> dict:
    """Runs on every Ray Train worker."""
    from ray.train.torch import get_device

    console.quiet_library_warnings()

    cfg, plan = PretrainConfig.model_validate(config["cfg"]), RunPlan(**config["plan"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = get_device()
    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(resolve_tokenizer_path(cfg.model))
    dtype = resolve_dtype(cfg.model.dtype)
    ds_config = deepspeed_config(cfg.deepspeed, cfg.optim, cfg.batch, world_size=world, total_steps=plan.total_steps, dtype=dtype, use_gpu=device.type == "cuda")
    engine, _keepalive = build_engine(cfg.model, tokenizer, ds_config, device, cfg.deepspeed.activation_checkpointing)
    state = ckpt.restore(engine, f"{plan.storage}/{cfg.run_name}", rank, world) or ckpt.TrainState(world_size=world)
    start_step = state.step
    nodes = all_gather(ray.get_runtime_context().get_node_id())
    stream = BlockStream(ray.train.get_dataset_shard("train"), cfg.batch.micro_batch_size, tokenizer.pad_token_id, state.epoch, state.blocks_in_epoch)
    check_order(state, stream, rank)
    loop = Loop(cfg, plan, engine, stream, config["validation"], rank, world, device, tokenizer.pad_token_id, state)
    step = loop.run()
    exported = False
    if step >= plan.total_steps and cfg.checkpoint.export:
        exported = export(engine, tokenizer, plan, cfg, dtype, rank)
    return {"step": step, "exported": exported, "start_step": start_step, "nodes": nodes}


def check_order(state: ckpt.TrainState, stream: BlockStream, rank: int) -> None:
    saved = state.first_block_digests[rank] if rank < len(state.first_block_digests) else None
    if state.blocks_in_epoch and saved and saved != stream.first_digest:
        print(f"[rank {rank}] warning: the data order differs from the checkpointed run (cluster or shards changed); "
              f"continuing after {state.blocks_in_epoch} blocks of epoch {state.epoch}", flush=True)


def export(engine, tokenizer, plan: RunPlan, cfg: PretrainConfig, dtype, rank: int) -> bool:
    final = Path(plan.run_dir) / "model"
    tmp = Path(plan.run_dir) / ".model.tmp"
    if rank == 0 and tmp.exists():
        shutil.rmtree(tmp)
    ckpt.export_hf_model(engine, tokenizer, tmp, dtype, cfg.checkpoint.export_shard_size_gb, rank)
    if rank == 0:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    return True


class Loop:
    """The optimizer-step loop of one worker: train, log, evaluate, checkpoint, report."""

    def __init__(self, cfg, plan, engine, stream, val, rank, world, device, pad_id, state):
        self.cfg, self.plan, self.engine, self.stream, self.val = cfg, plan, engine, stream, val
        self.rank, self.world, self.device, self.pad_id = rank, world, device, pad_id
        self.state = state
        self.peak = peak_flops(torch.cuda.get_device_name(device) if device.type == "cuda" else None, cfg.metrics.peak_flops_per_device)
        self.sink = None
        if rank == 0:
            m = cfg.metrics
            self.sink = MetricsSink(plan.run_dir, STAGE, cfg.run_name, state.step, m.tensorboard, m.ray_metrics)

    def run(self) -> int:
        from tqdm import tqdm

        bar = tqdm(total=self.plan.total_steps, initial=self.state.step, desc="pretrain", disable=self.rank != 0, mininterval=5)
        for step in range(self.state.step + 1, self.plan.total_steps + 1):
            self.maybe_fail(step)
            metrics = self.train_step()
            self.state.step = step
            self.state.epoch, self.state.blocks_in_epoch = self.stream.position()
            self.state.tokens_seen += metrics.pop("tokens")
            self.after_step(step, metrics)
            bar.update(1)
            if step == self.cfg.debug.stop_at_step:
                break
        bar.close()
        if self.sink:
            self.sink.close()
        return self.state.step

    def maybe_fail(self, step: int) -> None:
        """Fault injection: the last worker dies at ``debug.fail_at_step`` the first time it gets there."""
        if step != self.cfg.debug.fail_at_step or self.rank != self.world - 1:
            return
        marker = Path(self.plan.run_dir) / f".fault-injected-step-{step}"
        if marker.exists():
            return
        marker.touch()
        print(f"[rank {self.rank}] debug.fail_at_step={step}: killing this worker", flush=True)
        os._exit(1)

    def train_step(self) -> dict:
        engine, start = self.engine, time.perf_counter()
        wait = loss_sum = tokens = 0.0
        lr = engine.get_lr()[0]
        for _ in range(self.cfg.batch.grad_accum_steps):
            t = time.perf_counter()
            batch = next(self.stream)
            wait += time.perf_counter() - t
            labels = batch["labels"].to(self.device)
            out = engine(input_ids=batch["input_ids"].to(self.device), labels=labels, use_cache=False)
            engine.backward(out.loss)
            engine.step()
            loss_sum += out.loss.item()
            tokens += int((labels != -100).sum())
        loss, tokens = all_reduce_sum([loss_sum / self.cfg.batch.grad_accum_steps, tokens], self.device)
        seconds = time.perf_counter() - start
        metrics = {"loss": loss / self.world, "lr": lr, "grad_norm": float(engine.get_global_grad_norm() or 0.0), "tokens": int(tokens)}
        metrics.update(tokens_per_s=tokens / seconds, step_s=seconds, data_wait_s=wait)
        if self.peak:
            metrics["mfu"] = self.plan.flops_per_token * tokens / seconds / (self.peak * self.world)
        return metrics

    def after_step(self, step: int, metrics: dict) -> None:
        last = step == self.plan.total_steps or step == self.cfg.debug.stop_at_step
        m, c = self.cfg.metrics, self.cfg.checkpoint
        if self.val and (step % m.eval_every == 0 or last):
            metrics["eval_loss"] = self.evaluate()
        metrics.update(tokens_seen=self.state.tokens_seen, epoch=self.state.epoch)
        if self.rank == 0:
            console.write_progress(Path(self.plan.run_dir) / console.PROGRESS_FILE, step, self.plan.total_steps)
        if self.sink and (step % m.log_every == 0 or last or "eval_loss" in metrics):
            self.sink.log(step, metrics)
        if step % c.every_steps == 0 or last:
            self.state.first_block_digests = all_gather(self.stream.first_digest)
            ckpt.save_and_report(self.engine, self.state, {"step": step, **metrics}, self.rank, f"{self.plan.storage}/{self.cfg.run_name}")
        elif "eval_loss" in metrics:  # Ray Train takes one report per poll (~2 s): report evaluations, not every step
            ray.train.report({"step": step, **metrics})

    def evaluate(self) -> float:
        """Token-weighted loss over the validation blocks; every rank runs the same number of forwards."""
        mine = self.val[self.rank :: self.world]
        micro = self.cfg.batch.micro_batch_size
        passes = math.ceil(math.ceil(len(self.val) / self.world) / micro)
        total = weight = 0.0
        self.engine.eval()
        with torch.no_grad():
            for i in range(passes):
                rows = mine[i * micro : (i + 1) * micro]
                real = bool(rows)
                batch = self.collate(rows or self.val[:1])
                out = self.engine(**batch, use_cache=False)
                n = int((batch["labels"][:, 1:] != -100).sum())
                if real:
                    total, weight = total + out.loss.item() * n, weight + n
        self.engine.train()
        total, weight = all_reduce_sum([total, weight], self.device)
        return total / max(weight, 1.0)

    def collate(self, rows) -> dict[str, torch.Tensor]:
        batch = collate_blocks({"input_ids": rows}, self.pad_id)
        return {k: v.to(self.device) for k, v in batch.items()}
