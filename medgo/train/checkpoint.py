"""Checkpoints: DeepSpeed shards from every rank, reported to Ray Train; restore; Hugging Face export.

A checkpoint directory in Ray Train's storage holds DeepSpeed's files from all ranks (``latest``,
``step_<n>/zero_pp_rank_<r>_mp_rank_00_{model,optim}_states.pt``, ``zero_to_fp32.py``) and
``train_state.json`` (step, data position, tokens seen).  Ray Train keeps the last K, restores
the latest one after a worker failure (``ray.train.get_checkpoint()``) and, when a run with the
same name and storage path is started again, continues from it.

Ray Train's controller learns of a reported checkpoint only when it next polls the workers; a
worker that dies in between takes that report with it, and the controller would restore the one
before.  Each rank therefore drops a ``.complete-rank-<r>`` marker beside its files once its
upload has returned (:func:`mark_complete`), and :func:`checkpoint_to_restore` picks whichever is
newer: Ray's checkpoint or the newest one in storage that every rank has marked complete.  The
pre-training loop and the TRL stages (:mod:`medgo.train.trl_stage`) both restore this way.

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
COMPLETE_MARKER = ".complete-rank-{rank}"


def _storage_fs(uri: str):
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(uri) if "://" in uri else (pafs.LocalFileSystem(), uri)


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


def save_and_report(engine, state: TrainState, metrics: dict, rank: int, run_storage: str) -> None:
    """Every rank saves its DeepSpeed shards; Ray Train merges them into one checkpoint directory."""
    import ray.train

    name = f"{CHECKPOINT_PREFIX}{state.step:08d}"
    with tempfile.TemporaryDirectory(prefix="medgo-ckpt-") as tmp:
        engine.save_checkpoint(tmp, tag=f"step_{state.step}")
        if rank == 0:
            state.write(tmp)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_dir_name=name)
    mark_complete(run_storage, name, rank)


def mark_complete(run_storage: str, name: str, rank: int) -> None:
    """After ``ray.train.report`` returned (this rank's files are in storage): say so beside them."""
    fs, root = _storage_fs(run_storage)
    fs.create_dir(f"{root}/{name}", recursive=True)  # a rank that reported no files may return first
    with fs.open_output_stream(f"{root}/{name}/{COMPLETE_MARKER.format(rank=rank)}") as f:
        f.write(b"")


def checkpoint_to_restore(run_storage: str, rank: int, world_size: int):
    """The ``ray.train.Checkpoint`` this attempt restores (None on a fresh start); rank 0 chooses for all.

    The newer of Ray's latest checkpoint and the newest one in storage that every rank marked complete.
    """
    import ray.train

    from medgo.train.launcher import broadcast

    registered = ray.train.get_checkpoint()
    choice = None
    if rank == 0:
        candidates = []
        if registered is not None:
            candidates.append((step_of(registered.path), "ray", registered.path))
        newest = newest_complete_checkpoint(run_storage, world_size)
        if newest is not None:
            candidates.append((step_of(newest), "storage", newest))
        choice = max(candidates) if candidates else None
    choice = broadcast(choice)
    if choice is None:
        return None
    step, source, path = choice
    if source == "ray":
        return registered
    if rank == 0:
        print(f"restoring step {step} from {path}: reported before the failure but not yet registered by Ray Train", flush=True)
    return ray.train.Checkpoint(path, filesystem=_storage_fs(run_storage)[0])


def restore(engine, run_storage: str, rank: int, world_size: int) -> TrainState | None:
    """Load the checkpoint :func:`checkpoint_to_restore` picks into the DeepSpeed engine."""
    checkpoint = checkpoint_to_restore(run_storage, rank, world_size)
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        state = TrainState.read(directory)
        loaded, _ = engine.load_checkpoint(directory, tag=None)
        if loaded is None:
            raise RuntimeError(f"DeepSpeed found no checkpoint to load in {checkpoint.path}")
    return state


def step_of(path: str) -> int:
    """Step number of a ``checkpoint_step_<n>`` directory."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return int(name[len(CHECKPOINT_PREFIX):])


def _checkpoint_dirs(run_storage: str):
    import pyarrow.fs as pafs

    fs, root = _storage_fs(run_storage)
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith(CHECKPOINT_PREFIX))
    return fs, root, names


def _read_state(fs, path: str) -> TrainState | None:
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return TrainState(**json.loads(f.read().decode("utf-8")))


def newest_complete_checkpoint(run_storage: str, world_size: int) -> str | None:
    """Path of the newest checkpoint in storage with a completion marker from each of ``world_size`` ranks."""
    import pyarrow.fs as pafs

    fs, root, names = _checkpoint_dirs(run_storage)
    for name in reversed(names):
        markers = [f"{root}/{name}/{COMPLETE_MARKER.format(rank=r)}" for r in range(world_size)]
        if all(info.type == pafs.FileType.File for info in fs.get_file_info(markers)):
            return f"{root}/{name}"
    return None


def latest_checkpoint_state(run_storage: str) -> TrainState | None:
    """Driver side, before workers start: the newest ``train_state.json`` under a run's storage path."""
    fs, root, names = _checkpoint_dirs(run_storage)
    for name in reversed(names):
        state = _read_state(fs, f"{root}/{name}/{STATE_FILE}")
        if state is not None:
            return state
    return None


class SafetensorsWriter:
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


def export_hf_model(engine, tokenizer, out_dir: str | Path, dtype: torch.dtype, shard_bytes: int, rank: int) -> Path | None:
    """Collective over all ranks: gather each parameter, rank 0 writes a Hugging Face model directory.

    Tied weights appear once (``named_parameters`` yields a shared tensor once) and are re-tied
    by ``from_pretrained`` from ``tie_word_embeddings`` in the config.
    """
    import deepspeed

    module = engine.module
    writer = SafetensorsWriter(out_dir, shard_bytes) if rank == 0 else None
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
