"""The shared Ray Train launcher: a ``TorchTrainer`` from typed settings, DeepSpeed engine set-up.

A stage composes these functions; nothing here is stage-specific::

    result = fit(train_loop, cfg, loop_config(cfg, cfg.model), datasets={"train": ds}, split=["train"])

gloo on CPU, nccl on GPU; workers, CPUs/GPUs per worker, storage and restarts come from the
``ray`` section, the checkpoints kept from ``train.save_total_limit`` (:func:`ray_configs`).
Re-running with the same ``run_name`` and storage continues from the newest checkpoint there
(Ray Train reads the run's checkpoint snapshot).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch

from medgo.config import ModelConfig
from medgo.ray_utils import init_ray


def storage_root(path: str, stage: str) -> str:
    """``<path>/<stage>``: a URI is kept as is, a local path made absolute."""
    if "://" in path:
        return f"{path.rstrip('/')}/{stage}"
    return str(Path(path).expanduser().resolve() / stage)


def ordered_ingest():
    """Ray Data options for ingest: default limits, but blocks delivered in a fixed order."""
    from ray.train import DataConfig

    options = DataConfig.default_ingest_options()
    options.preserve_order = True
    return options


@contextmanager
def quiet_data_context():
    """Ray Data without progress bars or plan printing (training logs stay readable)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    saved = ctx.enable_progress_bars, ctx.print_on_execution_start
    ctx.enable_progress_bars, ctx.print_on_execution_start = False, False
    try:
        yield
    finally:
        ctx.enable_progress_bars, ctx.print_on_execution_start = saved


def ray_configs(cfg) -> dict:
    """Ray Train's configs for a training stage config: scaling, backend, run (storage, failures, checkpoints kept)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig

    ray_cfg = cfg.ray
    resources = {"CPU": ray_cfg.cpus_per_worker}
    if ray_cfg.use_gpu:
        resources["GPU"] = ray_cfg.gpus_per_worker or 1
    return {
        "scaling_config": ScalingConfig(num_workers=ray_cfg.num_workers, use_gpu=ray_cfg.use_gpu, resources_per_worker=resources, placement_strategy=ray_cfg.placement_strategy),
        "torch_config": TorchConfig(backend="nccl" if ray_cfg.use_gpu else "gloo"),
        "run_config": RunConfig(
            name=cfg.run_name,
            storage_path=cfg.storage(),
            failure_config=FailureConfig(max_failures=ray_cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.save_total_limit),
        ),
    }


def loop_config(cfg, model: ModelConfig, **extra) -> dict:
    """What every worker starts from (:func:`medgo.train.worker.start_worker`): the stage config, the
    model to load, the run directory and the run's checkpoint storage, plus the stage's ``extra``."""
    return {"cfg": cfg.model_dump(mode="json"), "model": model.model_dump(mode="json"), "run_dir": str(cfg.run_dir()),
            "run_storage": f"{cfg.storage()}/{cfg.run_name}", **extra}  # fmt: skip


def fit(train_fn: Callable[[dict], object], cfg, loop: dict, *, datasets: dict | None = None, split: list[str] | None = None):
    """Run ``train_fn`` on ``cfg.ray.num_workers`` workers (gloo on CPU, nccl on GPU); returns Ray Train's ``Result``.

    The console follows the progress the workers write into the run directory.
    """
    from ray.train import DataConfig
    from ray.train.torch import TorchTrainer

    from medgo import console

    init_ray(cfg.ray.address)
    console.follow(Path(loop["run_dir"]) / console.PROGRESS_FILE)
    with quiet_data_context():  # the trainer hands the driver's DataContext to its workers
        return TorchTrainer(
            train_fn,
            train_loop_config=loop,
            **ray_configs(cfg),
            datasets=datasets or {},
            dataset_config=DataConfig(datasets_to_split=split or [], execution_options=ordered_ingest()),
        ).fit()


def build_engine(model_cfg: ModelConfig, tokenizer, ds_config: dict, device, activation_checkpointing: bool):
    """Model + DeepSpeed engine on this worker.

    A checkpoint directory loads straight into ZeRO-3 partitions (``HfDeepSpeedConfig`` makes
    ``from_pretrained`` use ``deepspeed.zero.Init``); the embedded tiny model is built whole and
    seeded, then partitioned by ``deepspeed.initialize``.  Returns ``(engine, keepalive)``: keep
    the second value alive as long as the engine.
    """
    import deepspeed
    from transformers.integrations import HfDeepSpeedConfig

    from medgo.model.loading import is_tiny, load_model

    keepalive = None
    if ds_config["zero_optimization"]["stage"] == 3 and not is_tiny(model_cfg):
        keepalive = HfDeepSpeedConfig(ds_config)
    model = checkpoint_activations(load_model(model_cfg, tokenizer), activation_checkpointing)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    engine, *_ = deepspeed.initialize(model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=ds_config)
    return engine, keepalive


def checkpoint_activations(model, enabled: bool):
    """``train.activation_checkpointing`` on a model the loop drives itself (pre-training); returns the model."""
    if enabled:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return model


def all_reduce_sum(values: list[float], device) -> list[float]:
    """Sum a few numbers over all ranks (one collective)."""
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


def all_gather(obj) -> list:
    import torch.distributed as dist

    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj, src: int = 0):
    """``obj`` from rank ``src`` on every rank (itself when not distributed)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
