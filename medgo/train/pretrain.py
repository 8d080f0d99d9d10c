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
``per_device_train_batch_size x gradient_accumulation_steps x num_workers`` can be filled from the training split.
Running the same command again (same ``run_name`` and storage) resumes from the newest
checkpoint; a worker that dies is replaced and the run continues from its last checkpoint
(``ray.max_failures``).  The run directory ``<output_dir>/pretrain/<run_name>`` receives
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

from medgo import console
from medgo.config import ConfigError, save_config
from medgo.model.loading import model_config_for, resolve_tokenizer_path
from medgo.model.tokenizer import load_tokenizer, tokenizer_fingerprint
from medgo.ray_utils import init_ray
from medgo.train import checkpoint as ckpt
from medgo.train import launcher
from medgo.train.data import BlockStream, CorpusInfo, collate_blocks, corpus_info, open_shards, validation_blocks
from medgo.train.deepspeed_config import deepspeed_config
from medgo.train.faults import check_drill
from medgo.train.flops import Architecture, peak_flops
from medgo.train.launcher import all_gather, all_reduce_sum, build_engine
from medgo.train.metrics import MetricsSink, plot_loss_curve, read_metrics
from medgo.train.pretrain_config import PretrainConfig
from medgo.train.worker import Worker, start_worker

STAGE = PretrainConfig.stage


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
    workers, micro, accum = cfg.ray.num_workers, cfg.train.per_device_train_batch_size, cfg.train.gradient_accumulation_steps
    micro_batches = info.train_blocks // workers // micro  # Ray's equal split, then drop_last
    if micro_batches < accum:
        raise ConfigError(
            f"train.per_device_train_batch_size ({micro}) x train.gradient_accumulation_steps ({accum}) x ray.num_workers ({workers}) = "
            f"{micro * accum * workers} blocks per step, but {info.path} has {info.train_blocks} training blocks "
            f"({info.train_blocks // workers} per worker): lower one of them"
        )
    steps_per_epoch = micro_batches // accum
    total = cfg.train.max_steps or max(1, int(cfg.train.num_train_epochs * micro_batches) // accum)
    return total, steps_per_epoch


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
    check_drill(cfg.debug, total)
    storage = cfg.storage()
    resume_step = check_resume(cfg, storage)
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    arch = Architecture.from_hf(model_config)
    return RunPlan(str(run_dir), storage, total, per_epoch, info.block_size, arch.train_flops_per_token(info.block_size), fingerprint, resume_step)


def run(cfg: PretrainConfig) -> PretrainResult:
    plan = prepare(cfg)
    print(f"pretrain '{cfg.run_name}': {plan.total_steps} steps ({plan.steps_per_epoch} per epoch) on {cfg.ray.num_workers} workers"
          + (f", resuming at step {plan.resume_step}" if plan.resume_step else ""), flush=True)
    init_ray(cfg.ray.address)  # before Ray Data: a dataset made first would start a local Ray with no CPU to spare for its own tasks
    train = open_shards(cfg.data.corpus, "train", expected_fingerprint=plan.tokenizer_fingerprint)
    held_out = validation_blocks(cfg.data.corpus, cfg.data.eval_blocks)
    loop = launcher.loop_config(cfg, cfg.model, plan=asdict(plan), validation=held_out)
    result = launcher.fit(train_loop, cfg, loop, datasets={"train": train}, split=["train"])
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
    w = start_worker(config, PretrainConfig)
    cfg, plan = w.cfg, RunPlan(**config["plan"])
    ds_config = deepspeed_config(cfg.deepspeed, cfg.train, dtype=w.dtype, use_gpu=w.use_gpu, world_size=w.world_size, total_steps=plan.total_steps)
    engine, _keepalive = build_engine(w.model, w.tokenizer, ds_config, w.device, cfg.train.activation_checkpointing)
    state = ckpt.restore(engine, w.run_storage, w.rank, w.world_size) or ckpt.TrainState(world_size=w.world_size)
    start_step = state.step
    nodes = all_gather(ray.get_runtime_context().get_node_id())
    shard = ray.train.get_dataset_shard("train")
    stream = block_stream(cfg, shard, w.tokenizer.pad_token_id, state)
    check_order(state, stream, w.rank)
    step = Loop(w, plan, engine, stream, config["validation"], state).run()
    shard_bytes = export_shard_bytes(cfg, step, plan.total_steps)
    exported = shard_bytes is not None and export(engine, w, plan, shard_bytes)
    return {"step": step, "exported": bool(exported), "start_step": start_step, "nodes": nodes}


def block_stream(cfg: PretrainConfig, shard, pad_id: int, state: ckpt.TrainState) -> BlockStream:
    """This worker's micro-batches, from the position ``state`` records."""
    return BlockStream(shard, cfg.train.per_device_train_batch_size, pad_id, state.epoch, state.blocks_in_epoch,
                       shuffle_window=cfg.data.shuffle_window, seed=cfg.train.seed)  # fmt: skip


def check_order(state: ckpt.TrainState, stream: BlockStream, rank: int) -> None:
    saved = state.first_block_digests[rank] if rank < len(state.first_block_digests) else None
    if state.blocks_in_epoch and saved and saved != stream.first_digest:
        print(f"[rank {rank}] warning: the data order differs from the checkpointed run (cluster or shards changed); "
              f"continuing after {state.blocks_in_epoch} blocks of epoch {state.epoch}", flush=True)


def export_shard_bytes(cfg: PretrainConfig, step: int, total: int) -> int | None:
    """Largest file of the export (``export.shard_size_gb``), or None when nothing is exported (``export.model``, a stopped run)."""
    return int(cfg.export.shard_size_gb * 2**30) if cfg.export.model and step >= total else None


def export(engine, w: Worker, plan: RunPlan, shard_bytes: int) -> bool:
    """Collective: ``<run dir>/model``, a Hugging Face directory in files of at most ``shard_bytes``, replaced atomically."""
    final, tmp = Path(plan.run_dir) / "model", Path(plan.run_dir) / ".model.tmp"
    if w.rank == 0 and tmp.exists():
        shutil.rmtree(tmp)
    ckpt.export_hf_model(engine, w.tokenizer, tmp, w.dtype, shard_bytes, w.rank)
    if w.rank == 0:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    return True


@dataclass(frozen=True)
class Cadence:
    """After which steps the loop logs (``train.logging_steps``), evaluates (``train.eval_steps``) and
    checkpoints (``train.save_steps``); the last step, and ``debug.stop_at_step``, do all three."""

    total: int
    logging_steps: int
    eval_steps: int
    save_steps: int
    stop_at: int | None

    @classmethod
    def of(cls, cfg: PretrainConfig, total: int) -> Cadence:
        t = cfg.train
        return cls(total, t.logging_steps, t.eval_steps, t.save_steps, cfg.debug.stop_at_step)

    def last(self, step: int) -> bool:
        return step in (self.total, self.stop_at)

    def logs(self, step: int) -> bool:
        return step % self.logging_steps == 0 or self.last(step)

    def evaluates(self, step: int) -> bool:
        return step % self.eval_steps == 0 or self.last(step)

    def saves(self, step: int) -> bool:
        return step % self.save_steps == 0 or self.last(step)


def metrics_sink(cfg: PretrainConfig, run_dir: str, start_step: int) -> MetricsSink:
    """``metrics.jsonl`` plus the sinks the ``metrics`` section asks for (rank 0)."""
    return MetricsSink(run_dir, STAGE, cfg.run_name, start_step, cfg.metrics.tensorboard, cfg.metrics.ray_metrics)


class Loop:
    """The optimizer-step loop of one worker: train, log, evaluate, checkpoint, report."""

    def __init__(self, w: Worker, plan: RunPlan, engine, stream, val, state):
        self.w, self.cfg, self.plan, self.engine, self.stream, self.val, self.state = w, w.cfg, plan, engine, stream, val, state
        self.rank, self.world, self.device, self.pad_id = w.rank, w.world_size, w.device, w.tokenizer.pad_token_id
        self.cadence = Cadence.of(w.cfg, plan.total_steps)
        self.peak = peak_flops(torch.cuda.get_device_name(w.device) if w.use_gpu else None, w.cfg.metrics.peak_flops_per_device)
        self.sink = metrics_sink(w.cfg, plan.run_dir, state.step) if w.rank == 0 else None

    def run(self) -> int:
        from tqdm import tqdm

        bar = tqdm(total=self.plan.total_steps, initial=self.state.step, desc="pretrain", disable=self.rank != 0, mininterval=5)
        for step in range(self.state.step + 1, self.plan.total_steps + 1):
            metrics = self.train_step()
            self.state.step = step
            self.state.epoch, self.state.blocks_in_epoch = self.stream.position()
            self.state.tokens_seen += metrics.pop("tokens")
            self.after_step(step, metrics)
            bar.update(1)
            self.w.drill.after_step(step, self.rank, self.world)
            if self.w.drill.stops_at(step):
                break
        bar.close()
        if self.sink:
            self.sink.close()
        return self.state.step

    def train_step(self) -> dict:
        engine, start = self.engine, time.perf_counter()
        wait = loss_sum = tokens = 0.0
        lr = engine.get_lr()[0]
        accum = self.cfg.train.gradient_accumulation_steps
        for _ in range(accum):
            t = time.perf_counter()
            batch = next(self.stream)
            wait += time.perf_counter() - t
            labels = batch["labels"].to(self.device)
            out = engine(input_ids=batch["input_ids"].to(self.device), labels=labels, use_cache=False)
            engine.backward(out.loss)
            engine.step()
            loss_sum += out.loss.item()
            tokens += int((labels != -100).sum())
        loss, tokens = all_reduce_sum([loss_sum / accum, tokens], self.device)
        seconds = time.perf_counter() - start
        metrics = {"loss": loss / self.world, "lr": lr, "grad_norm": float(engine.get_global_grad_norm() or 0.0), "tokens": int(tokens)}
        metrics.update(tokens_per_s=tokens / seconds, step_s=seconds, data_wait_s=wait)
        if self.peak:
            metrics["mfu"] = self.plan.flops_per_token * tokens / seconds / (self.peak * self.world)
        return metrics

    def after_step(self, step: int, metrics: dict) -> None:
        c = self.cadence
        if self.val and c.evaluates(step):
            metrics["eval_loss"] = self.evaluate()
        metrics.update(tokens_seen=self.state.tokens_seen, epoch=self.state.epoch)
        if self.rank == 0:
            console.write_progress(Path(self.plan.run_dir) / console.PROGRESS_FILE, step, self.plan.total_steps)
        if self.sink and (c.logs(step) or "eval_loss" in metrics):
            self.sink.log(step, metrics)
        if c.saves(step):
            self.state.first_block_digests = all_gather(self.stream.first_digest)
            ckpt.save_and_report(self.engine, self.state, {"step": step, **metrics}, self.rank, self.w.run_storage)
        elif "eval_loss" in metrics:  # Ray Train takes one report per poll (~2 s): report evaluations, not every step
            ray.train.report({"step": step, **metrics})

    def evaluate(self) -> float:
        """Token-weighted loss over the validation blocks; every rank runs the same number of forwards."""
        mine = self.val[self.rank :: self.world]
        micro = self.cfg.train.per_device_train_batch_size
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
