"""The worker set-up every training stage starts its ``train_loop`` with, on each Ray Train worker.

    w = start_worker(config, SFTConfig)     # config: launcher.loop_config(...) as the driver built it
    w.cfg, w.rank, w.world_size, w.device, w.dtype, w.tokenizer, w.run_dir, w.drill

Library warnings are quietened, the stage config is validated again, torch is seeded with
``train.seed``, the tokenizer of the model to train is loaded and the fault drill armed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from medgo import console
from medgo.config import ModelConfig
from medgo.train.faults import FaultDrill


@dataclass
class Worker:
    """What a stage's ``train_loop`` starts from."""

    cfg: object
    model: ModelConfig
    """The model every worker loads (a TRL stage's base written by the driver)."""
    rank: int
    world_size: int
    device: torch.device
    dtype: torch.dtype
    tokenizer: object
    run_dir: Path
    run_storage: str
    """Where this run's checkpoints live (Ray Train's storage + run name)."""
    drill: FaultDrill

    @property
    def use_gpu(self) -> bool:
        return self.device.type == "cuda"


def seed_worker(train) -> None:
    """Seed torch from ``train.seed`` (the TRL trainers seed again from the same key)."""
    torch.manual_seed(train.seed)


def start_worker(config: dict, config_cls: type) -> Worker:
    """Parse the loop config and set up this worker."""
    import ray.train
    from ray.train.torch import get_device

    from medgo.model.loading import resolve_dtype, resolve_tokenizer_path
    from medgo.model.tokenizer import load_tokenizer

    console.quiet_library_warnings()
    cfg, model = config_cls.model_validate(config["cfg"]), ModelConfig.model_validate(config["model"])
    ctx = ray.train.get_context()
    seed_worker(cfg.train)
    run_dir = Path(config["run_dir"])
    return Worker(cfg, model, ctx.get_world_rank(), ctx.get_world_size(), get_device(), resolve_dtype(cfg.model.dtype),
                  load_tokenizer(resolve_tokenizer_path(model)), run_dir, config["run_storage"], FaultDrill(cfg.debug, run_dir))  # fmt: skip
