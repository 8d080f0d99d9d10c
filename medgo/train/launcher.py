"""The shared Ray Train launcher: a ``TorchTrainer`` from typed settings, DeepSpeed engine set-up.

A stage composes these functions; nothing here is stage-specific::

    result = fit(train_loop, loop_config, ray_cfg, run_name="tiny", storage="/abs/runs/pretrain",
                 datasets={"train": ds, "validation": val}, split=["train"],
                 keep_last=3, max_failures=3)

gloo on CPU, nccl on GPU; workers, CPUs/GPUs per worker and the storage path come from
:class:`medgo.config.RayConfig`.  Re-running with the same ``run_name`` and ``storage`` continues
from the newest checkpoint there (Ray Train reads the run's checkpoint snapshot).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch

from medgo.config import ModelConfig, RayConfig
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


def fit(
    train_fn: Callable[[dict], object],
    loop_config: dict,
    ray_cfg: RayConfig,
    *,
    run_name: str,
    storage: str,
    datasets: dict,
    split: list[str],
    keep_last: int,
    max_failures: int,
):
    """Run ``train_fn`` on ``ray_cfg.num_workers`` workers; returns Ray Train's ``Result``."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    init_ray(ray_cfg.address)
    resources = {"CPU": ray_cfg.cpus_per_worker}
    if ray_cfg.use_gpu:
        resources["GPU"] = ray_cfg.gpus_per_worker or 1
    with quiet_data_context():  # the trainer hands the driver's DataContext to its workers
        return TorchTrainer(
            train_fn,
            train_loop_config=loop_config,
            scaling_config=ScalingConfig(num_workers=ray_cfg.num_workers, use_gpu=ray_cfg.use_gpu, resources_per_worker=resources, placement_strategy=ray_cfg.placement_strategy),
            torch_config=TorchConfig(backend="nccl" if ray_cfg.use_gpu else "gloo"),
            run_config=RunConfig(
                name=run_name,
                storage_path=storage,
                failure_config=FailureConfig(max_failures=max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=keep_last),
            ),
            datasets=datasets,
            dataset_config=DataConfig(datasets_to_split=split, execution_options=ordered_ingest()),
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
    model = load_model(model_cfg, tokenizer)
    if activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if device.type == "cuda":
        torch.cuda.set_device(device)
    engine, *_ = deepspeed.initialize(model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=ds_config)
    return engine, keepalive


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
