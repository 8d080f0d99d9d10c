"""Checkpoints: DeepSpeed shards from every rank, reported to Ray Train; restore; Hugging Face export.

A checkpoint directory in Ray Train's storage holds DeepSpeed's files from all ranks (``latest``,
``step_<n>/zero_pp_rank_<r>_mp_rank_00_{model,optim}_states.pt``, ``zero_to_fp32.py``) and
``train_state.json`` (step, data position, tokens seen).  Ray Train keeps the last K, restores
the latest one after a worker failure (``ray.train.get_checkpoint()``) and, when a run with the
same name and storage path is started again, continues from it.

:func:`export_hf_model` gathers the ZeRO-3 partitions one parameter at a time and writes a plain
Hugging Face directory (``config.json``, ``model*.safetensors``, tokenizer files).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

STATE_FILE = "train_state.json"
CHECKPOINT_PREFIX = "checkpoint_step_"


@dataclass
class TrainState:
    """Where a run is: optimizer steps done and the position in the data stream."""

    step: int = 0
    epoch: int = 0
    blocks_in_epoch: int = 0
    """Blocks of the current epoch each worker has consumed (equal for every worker)."""
    tokens_seen: int = 0
    """Non-padding tokens trained on, all workers together."""
    world_size: int = 1
    first_block_digests: list[str | None] = field(default_factory=list)
    """Per rank, hash of the first block it read this epoch: tells whether the data order survived a resume."""

    def write(self, directory: str | Path) -> None:
        Path(directory, STATE_FILE).write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")

    @classmethod
    def read(cls, directory: str | Path) -> TrainState:
        path = Path(directory, STATE_FILE)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {directory} has no {STATE_FILE}")
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def save_and_report(engine, state: TrainState, metrics: dict, rank: int) -> None:
    """Every rank saves its DeepSpeed shards; Ray Train merges them into one checkpoint directory."""
    import ray.train

    with tempfile.TemporaryDirectory(prefix="medgo-ckpt-") as tmp:
        engine.save_checkpoint(tmp, tag=f"step_{state.step}")
        if rank == 0:
            state.write(tmp)
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(tmp),
            checkpoint_dir_name=f"{CHECKPOINT_PREFIX}{state.step:08d}",
        )


def restore(engine) -> TrainState | None:
    """Load the checkpoint Ray Train hands this attempt (None on a fresh start)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        state = TrainState.read(directory)
        path, _ = engine.load_checkpoint(directory, tag=None)
        if path is None:
            raise RuntimeError(f"DeepSpeed found no checkpoint to load in {checkpoint.path}")
    return state


def latest_checkpoint_state(run_storage: str) -> TrainState | None:
    """Driver side, before workers start: the newest ``train_state.json`` under a run's storage path."""
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(run_storage) if "://" in run_storage else (pafs.LocalFileSystem(), run_storage)
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    dirs = sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith(CHECKPOINT_PREFIX))
    for name in reversed(dirs):
        path = f"{root}/{name}/{STATE_FILE}"
        if fs.get_file_info(path).type == pafs.FileType.File:
            with fs.open_input_stream(path) as f:
                return TrainState(**json.loads(f.read().decode("utf-8")))
    return None


class ShardWriter:
    """Writes tensors into safetensors files of at most ``max_bytes`` each, plus the HF index."""

    def __init__(self, out_dir: str | Path, max_bytes: int):
        self.out_dir, self.max_bytes = Path(out_dir), max_bytes
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes = 0
        self.files: list[tuple[Path, list[str]]] = []
        self.total = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.max_bytes:
            self._flush()
        self.pending[name] = tensor.contiguous()
        self.pending_bytes += size
        self.total += size

    def _flush(self) -> None:
        from safetensors.torch import save_file

        path = self.out_dir / f".part-{len(self.files):05d}.safetensors"
        save_file(self.pending, str(path), metadata={"format": "pt"})
        self.files.append((path, list(self.pending)))
        self.pending, self.pending_bytes = {}, 0

    def close(self) -> list[Path]:
        if self.pending or not self.files:
            self._flush()
        n = len(self.files)
        if n == 1:
            final = [self.out_dir / "model.safetensors"]
        else:
            final = [self.out_dir / f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        weight_map = {}
        for (tmp, names), path in zip(self.files, final):
            os.replace(tmp, path)
            weight_map.update({name: path.name for name in names})
        if n > 1:
            index = {"metadata": {"total_size": self.total}, "weight_map": dict(sorted(weight_map.items()))}
            (self.out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
        return final


def export_hf_model(engine, tokenizer, out_dir: str | Path, dtype: torch.dtype, shard_gb: float, rank: int) -> Path | None:
    """Collective over all ranks: gather each parameter, rank 0 writes a Hugging Face model directory.

    Tied weights appear once (``named_parameters`` yields a shared tensor once) and are re-tied
    by ``from_pretrained`` from ``tie_word_embeddings`` in the config.
    """
    import deepspeed

    module = engine.module
    writer = ShardWriter(out_dir, int(shard_gb * 2**30)) if rank == 0 else None
    for name, param in module.named_parameters():
        with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
            if writer is not None:
                writer.add(name, param.detach().to("cpu", dtype).clone())
    if writer is None:
        return None
    writer.close()
    config = module.config
    config.dtype = dtype
    config.save_pretrained(out_dir)
    if getattr(module, "generation_config", None) is not None:
        module.generation_config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)
