"""Pre-training the tiny model with 2 ZeRO-3 workers under Ray Train: learning, checkpoints, faults, resume, export.

The uninterrupted reference run (two nodes, from ``conftest.reference``) and one run of the same
config that is stopped at step 10, started again under the same name (resume), and loses a worker
at step 18 (restore from the step-16 checkpoint) must end with the same weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from pretrain_runs import BLOCK, EVERY, FAIL, MICRO, PEAK, STEPS, STOP, WORKERS, run_config
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from medgo.config import ModelConfig
from medgo.model.loading import model_config_for
from medgo.train.checkpoint import CHECKPOINT_PREFIX, TrainState
from medgo.train.data import collate_blocks, validation_blocks
from medgo.train.flops import Architecture, peak_flops
from medgo.train.metrics import read_metrics
from medgo.train.pretrain import run


@pytest.fixture(scope="module")
def interrupted(reference_job, ray_session, packed_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupted")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")  # Ray Train polls workers every 2 s by default
        first = run(run_config(packed_corpus, root, "interrupted", f"debug.stop_at_step={STOP}"))
        second = run(run_config(packed_corpus, root, "interrupted", f"debug.fail_at_step={FAIL}"))
    return first, second


@pytest.fixture(scope="module")
def ref_dir(reference) -> Path:
    return Path(reference["run_dir"])


def weights(model_dir) -> dict[str, torch.Tensor]:
    return load_file(str(Path(model_dir) / "model.safetensors"))


def test_stop_then_rerun_by_name_resumes(interrupted, ref_dir):
    first, second = interrupted
    assert first.steps == STOP and first.model_dir is None
    assert second.resumed_from == STOP and second.steps == STEPS
    ref = {r["step"]: r["loss"] for r in read_metrics(ref_dir / "metrics.jsonl")}
    rows = read_metrics(second.run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1)), "each step logged once across stop, resume and restore"
    assert {r["step"]: r["loss"] for r in rows} == ref, "the same losses, bit for bit, as the uninterrupted run"


def test_killed_worker_is_replaced_and_the_run_ends_where_the_uninterrupted_one_did(interrupted, reference):
    _, second = interrupted
    assert (second.run_dir / f".fault-injected-step-{FAIL}").exists()
    assert second.last_attempt_start == FAIL - FAIL % EVERY, "the last attempt restored the newest checkpoint"
    ref, got = weights(reference["model_dir"]), weights(second.model_dir)
    assert set(ref) == set(got)
    differ = {k: (ref[k] - got[k]).abs().max().item() for k in ref if not torch.equal(ref[k], got[k])}
    assert not differ, f"bit-identical weights expected (same config, same thread count); max differences: {differ}"


def test_loss_falls_and_every_metric_is_logged(ref_dir, tokenizer):
    rows = read_metrics(ref_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    arch = Architecture.from_hf(model_config_for(ModelConfig(), tokenizer))
    losses = [r["loss"] for r in rows]
    assert losses[0] == pytest.approx(math.log(arch.vocab), abs=0.3)  # a random model is uniform over the vocabulary
    assert sum(losses[-3:]) / 3 < losses[0] - 1.0, losses  # blocks shuffled across sources: no easy run of one source
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    assert [s for s, _ in evals] == [8, 16, 24] and evals[-1][1] < evals[0][1]
    for r in rows:
        assert r["tokens_seen"] == r["step"] * WORKERS * MICRO * BLOCK
        assert r["mfu"] == pytest.approx(arch.train_flops_per_token(BLOCK) * r["tokens_per_s"] / (PEAK * WORKERS))
        assert math.isfinite(r["grad_norm"]) and r["grad_norm"] > 0 and r["data_wait_s"] <= r["step_s"]
    lrs = [r["lr"] for r in rows]
    assert max(lrs) == pytest.approx(1e-2, rel=0.01) and lrs[0] == 0 and lrs[-1] < 0.2e-2


def test_tensorboard_and_loss_curve(ref_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(ref_dir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("pretrain/loss")] == list(range(1, STEPS + 1))
    assert len(events.Scalars("pretrain/eval_loss")) == 3
    assert (ref_dir / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_checkpoints_hold_every_rank_and_only_the_last_two_are_kept(ref_dir):
    dirs = sorted(ref_dir.glob(f"{CHECKPOINT_PREFIX}*"))
    assert [d.name for d in dirs] == [f"{CHECKPOINT_PREFIX}{s:08d}" for s in (STEPS - EVERY, STEPS)]
    for d in dirs:
        state = TrainState.read(d)
        assert state.world_size == WORKERS and state.blocks_in_epoch == state.step * MICRO
        tag = (d / "latest").read_text().strip()
        for rank in range(WORKERS):
            for kind in ("model", "optim"):
                assert (d / tag / f"zero_pp_rank_{rank}_mp_rank_00_{kind}_states.pt").is_file()


def test_exported_model_equals_deepspeeds_consolidation_and_generates(reference, ref_dir, packed_corpus):
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    exported = weights(reference["model_dir"])
    consolidated = get_fp32_state_dict_from_zero_checkpoint(str(ref_dir / f"{CHECKPOINT_PREFIX}{STEPS:08d}"))
    assert set(exported) == set(consolidated) - {"lm_head.weight"}  # tied to the embedding
    assert all(torch.equal(exported[k], consolidated[k]) for k in exported)

    model = AutoModelForCausalLM.from_pretrained(reference["model_dir"])
    tok = AutoTokenizer.from_pretrained(reference["model_dir"])
    batch = collate_blocks({"input_ids": validation_blocks(packed_corpus, 8)}, tok.pad_token_id)
    with torch.no_grad():
        loss = model(**batch).loss.item()
    assert loss == pytest.approx(read_metrics(ref_dir / "metrics.jsonl")[-1]["eval_loss"], abs=1e-3)
    prompt = tok("高血压患者", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > prompt["input_ids"].shape[1] and tok.decode(out[0], skip_special_tokens=True).startswith("高血压患者")


@pytest.mark.gpu
def test_one_gpu_worker_trains_in_bf16_and_reports_mfu(ray_session, packed_corpus, tmp_path):
    """On a CUDA machine: nccl, bf16 and the device's peak FLOP/s (A100/H100/H200) for MFU."""
    result = run(run_config(packed_corpus, tmp_path, "gpu", "ray.num_workers=1", "ray.use_gpu=true",
                            "metrics.peak_flops_per_device=null", "train.max_steps=8"))
    rows = read_metrics(result.run_dir / "metrics.jsonl")
    assert rows[-1]["loss"] < rows[0]["loss"]
    if peak_flops(torch.cuda.get_device_name()) is not None:
        assert all(0 < r["mfu"] < 1 for r in rows)
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["dtype"] == "bfloat16"
