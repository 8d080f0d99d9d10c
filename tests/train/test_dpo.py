"""DPO stage: typed config, the serve-export round trip, and real tiny runs on Ray Train + ZeRO-3.

The end-to-end runs use 2 gloo workers: a new LoRA adapter against the base model on the sample
feedback and triples, and the continuation of an SFT adapter, whose reference is the SFT policy.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medgo.cli import main
from medgo.config import ConfigError, ModelConfig, build_config, load_config
from medgo.model.loading import load_model
from medgo.model.tokenizer import load_tokenizer
from medgo.serve.store import FeedbackStore
from medgo.train.config import QWEN2_LORA_TARGETS
from medgo.train.dpo import run
from medgo.train.dpo_config import DPOConfig
from medgo.train.preference import build_preferences, load_pairs
from medgo.train.preference_stage import cache_key, cached_dataset, load_policy, peft_config
from medgo.train.trl_stage import trainer_kwargs

from conftest import answer_logps, load_adapter

LOG2 = math.log(2)
PAIRS = 16
"""Pairs of the in-process cached-reference tests."""


# ----------------------------------------------------------------------------- config


def test_unknown_key_is_rejected_by_name():
    with pytest.raises(ConfigError, match=r"unknown key 'train\.betta'"):
        build_config(DPOConfig, {"train": {"betta": 0.1}})
    with pytest.raises(ConfigError, match=r"key 'train\.loss_type'"):
        build_config(DPOConfig, {"train": {"loss_type": "sigmoidal"}})


def test_the_72b_config_carries_the_intended_settings():
    cfg = load_config(DPOConfig, "jobs/configs/dpo/qwen2_72b.yaml")
    assert cfg.ray.num_workers == 64 and cfg.ray.use_gpu and cfg.ray.gpus_per_worker == 1
    assert cfg.model.dtype == "bfloat16" and cfg.model.attn_implementation == "flash_attention_2"
    assert cfg.deepspeed.zero_stage == 3 and cfg.train.beta == 0.1 and cfg.train.loss_type == "sigmoid"
    assert (cfg.lora.r, cfg.lora.lora_alpha, cfg.lora.lora_dropout) == (16, 8, 0.05) and cfg.lora.target_modules == QWEN2_LORA_TARGETS
    assert cfg.model.adapter and cfg.data.feedback and cfg.train.precompute_ref_log_probs and cfg.train.precompute_ref_batch_size == 8


def test_one_feedback_path_on_the_command_line_is_a_list():
    cfg = load_config(DPOConfig, "jobs/configs/dpo/tiny.yaml", ["data.feedback=runs/serve/feedback.jsonl"])
    assert cfg.data.feedback == ["runs/serve/feedback.jsonl"]


def test_bad_inputs_stop_the_run_before_any_worker_starts(tmp_path):
    base = [f"output_dir={tmp_path}"]
    with pytest.raises(ConfigError, match="model.adapter: .*no-adapter"):
        run(load_config(DPOConfig, "jobs/configs/dpo/tiny.yaml", [*base, f"model.adapter={tmp_path / 'no-adapter'}"]))
    with pytest.raises(ConfigError, match="missing.jsonl"):
        run(load_config(DPOConfig, "jobs/configs/dpo/tiny.yaml", [*base, f"data.feedback={tmp_path / 'missing.jsonl'}"]))
    only_acceptable = tmp_path / "fb.jsonl"
    only_acceptable.write_text(json.dumps({"response_id": "a", "prompt": "问", "answer": "答", "verdict": "acceptable"}) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no preference pairs"):
        run(load_config(DPOConfig, "jobs/configs/dpo/tiny.yaml", [*base, f"data.feedback={only_acceptable}", "data.pairs=[]"]))
    summary = json.loads((tmp_path / "dpo" / "tiny" / "data" / "summary.json").read_text(encoding="utf-8"))
    assert summary["skipped"] == {"unpaired": 1}
    with pytest.raises(ConfigError, match="no preference pairs"):  # every prompt fills 16 tokens
        run(load_config(DPOConfig, "jobs/configs/dpo/tiny.yaml", [*base, "train.max_length=16"]))
    summary = json.loads((tmp_path / "dpo" / "tiny" / "data" / "summary.json").read_text(encoding="utf-8"))
    assert summary["skipped"] == {"prompt_too_long": 78, "unpaired": 26}


# ----------------------------------------------------------------------------- serve export -> pairs


def completion(rid: str, prompt, answer: str, endpoint: str = "chat") -> dict:
    return dict(id=rid, endpoint=endpoint, model="medgo-tiny", base_version="tiny@abc", adapter=None, adapter_version=None, prompt=prompt,
                answer=answer, params={"temperature": 0.7}, finish_reason="stop", prompt_tokens=12, completion_tokens=6, latency_s=0.05)  # fmt: skip


def test_serve_export_round_trips_into_a_dpo_dataset(tmp_path):
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    chat = [{"role": "system", "content": "你是医生。"}, {"role": "user", "content": "高血压患者可以喝咖啡吗？"}]
    store = FeedbackStore(url)
    store.add_completion(**completion("c1", chat, "可以少量饮用，注意监测血压。"))
    store.add_completion(**completion("c2", chat, "随便喝。"))
    store.add_completion(**completion("c3", chat, "绝对不能喝。"))
    store.add_completion(**completion("t1", "高血压的定义", "收缩压≥140", endpoint="text"))
    store.add_feedback("c1", "acceptable", reviewer="dr_li")
    store.add_feedback("c2", "unacceptable", corrected_answer="少量可以，避免浓咖啡。", reviewer="dr_li")
    store.add_feedback("c3", "acceptable", reviewer="dr_wang")
    store.add_feedback("c3", "unacceptable", reviewer="dr_chen")  # a second opinion: the newest wins
    store.add_feedback("t1", "acceptable")
    store.close()
    out = tmp_path / "feedback.jsonl"
    assert main(["serve", "export", "--database", url, "--output", str(out)]) == 0

    prefs = build_preferences(feedback=[str(out)])
    got = [(r["kind"], r["chosen"][0]["content"], r["rejected"][0]["content"], r["prompt"]) for r in prefs.rows()]
    assert got == [
        ("correction", "少量可以，避免浓咖啡。", "随便喝。", chat),
        ("verdict", "可以少量饮用，注意监测血压。", "随便喝。", chat),
        ("verdict", "可以少量饮用，注意监测血压。", "绝对不能喝。", chat),
    ]
    assert prefs.ledger.reasons() == {"superseded": 1, "text_completion": 1}
    prefs.write(tmp_path / "data")
    assert load_pairs(tmp_path / "data" / "pairs.parquet")[0]["prompt"] == chat


@pytest.mark.parametrize("raw", [False, True], ids=["default", "raw_feedback_unsafe"])
def test_dpo_data_is_deidentified_unless_the_unsafe_switch_is_set(tmp_path, tokenizer, capsys, raw):
    from medgo.train.dpo import build_data

    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    chat = [{"role": "user", "content": "患者张伟，电话13812345678，住院号ZY20240518，能喝咖啡吗？"}]
    store = FeedbackStore(url)
    store.add_completion(**completion("c1", chat, "可以少量饮用。"))
    store.add_feedback("c1", "unacceptable", corrected_answer="患者张伟应少量饮用，复诊请拨13812345678。")
    store.close()
    out = tmp_path / "feedback.jsonl"
    assert main(["serve", "export", "--database", url, "--output", str(out), "--raw-unsafe"]) == 0  # the worst case: a raw export
    cfg = load_config(DPOConfig, "jobs/configs/dpo/tiny.yaml", [f"data.feedback={out}", "data.pairs=[]", f"data.raw_feedback_unsafe={str(raw).lower()}"])
    path, summary = build_data(cfg, tokenizer, tmp_path / "run")
    text = json.dumps(load_pairs(path).to_list(), ensure_ascii=False)
    log = capsys.readouterr().out
    if raw:
        assert "张伟" in text and summary["deidentified"] is None
        assert "WARNING data.raw_feedback_unsafe is set" in log
    else:
        assert not [v for v in ("张伟", "13812345678", "ZY20240518") if v in text], text
        assert summary["deidentified"] == {"name": 2, "phone": 2, "record_number": 1} and "WARNING" not in log
        assert "identifiers replaced {'name': 2, 'phone': 2, 'record_number': 1}" in log


# ----------------------------------------------------------------------------- end to end on Ray Train


def preference_accuracy(policy, reference_ctx, tokenizer, pairs) -> float:
    """Share of pairs whose implicit reward margin (policy vs reference log-ratios) is positive."""
    prompts = [p["prompt"] for p in pairs] * 2
    answers = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    logratio = answer_logps(policy, tokenizer, prompts, answers)
    with reference_ctx():
        logratio -= answer_logps(policy, tokenizer, prompts, answers)
    chosen, rejected = logratio.chunk(2)
    return float((chosen > rejected).float().mean())


@pytest.fixture(scope="module")
def fresh_run(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo")
    return run(load_config(DPOConfig, "jobs/configs/dpo/tiny.yaml", [f"output_dir={out}", "run_name=fresh"]))


def test_tiny_dpo_learns_the_doctors_preferences(fresh_run, tokenizer):
    rows = fresh_run.metrics
    assert {"step", "loss", "lr", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= set(rows[0])
    assert fresh_run.reference == "base model" and fresh_run.steps == len(rows) == 10  # 78 pairs / (4 x 2 workers)
    assert abs(rows[0]["loss"] - LOG2) < 1e-3 and rows[0]["rewards/margins"] == 0  # the adapter starts as a no-op
    last = rows[-3:]
    assert sum(r["loss"] for r in last) / 3 < LOG2 - 0.1
    assert sum(r["rewards/margins"] for r in last) / 3 > 0.2 and sum(r["rewards/accuracies"] for r in last) / 3 > 0.75
    run_dir = fresh_run.run_dir
    for name in ("config.yaml", "data/pairs.parquet", "data/summary.json", "data/skipped.jsonl", "metrics.jsonl", "loss_curve.png", "rewards_curve.png"):
        assert (run_dir / name).is_file(), name
    assert fresh_run.data["pairs"] == fresh_run.pairs == 78

    policy = load_adapter(fresh_run.adapter_dir)
    pairs = list(load_pairs(run_dir / "data" / "pairs.parquet"))
    assert preference_accuracy(policy, policy.disable_adapter, tokenizer, pairs) > 0.8


def test_tiny_dpo_changes_the_adapter_and_not_the_base(fresh_run, tokenizer):
    seeded = load_model(ModelConfig(), tokenizer).state_dict()
    saved = load_file(fresh_run.base_dir / "model.safetensors")
    assert saved and all(torch.equal(seeded[k], v) for k, v in saved.items())
    policy = load_adapter(fresh_run.adapter_dir)
    base_weights = {k.replace("base_model.model.", "").replace(".base_layer", ""): v for k, v in policy.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(base_weights[k], v) for k, v in saved.items())
    adapter = load_file(fresh_run.adapter_dir / "adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]  # LoRA starts with B = 0
    assert len(lora_b) == 2 * len(QWEN2_LORA_TARGETS) and all(v.abs().max() > 0 for v in lora_b)
    assert not (fresh_run.adapter_dir / "ref").exists()


def test_dpo_continues_an_sft_adapter_against_the_sft_policy(fresh_run, tiny_base_dir, sft_adapter, tokenizer):
    sft = load_adapter(sft_adapter)
    pair = list(load_pairs(fresh_run.run_dir / "data" / "pairs.parquet"))[0]
    with sft.disable_adapter():
        raw = answer_logps(sft, tokenizer, [pair["prompt"]], [pair["chosen"]])
    assert abs(answer_logps(sft, tokenizer, [pair["prompt"]], [pair["chosen"]]) - raw) > 1.0  # the SFT policy is not the base

    overrides = [f"output_dir={fresh_run.run_dir.parent.parent}", "run_name=continued", f"model.base_model={tiny_base_dir}",
                 f"model.adapter={sft_adapter}", "data.pairs=[]", "train.max_steps=2"]  # fmt: skip
    result = run(load_config(DPOConfig, "jobs/configs/dpo/tiny.yaml", overrides))
    assert result.reference == f"adapter {sft_adapter.resolve()}" and result.steps == 2
    first = result.metrics[0]  # policy = SFT policy = reference before the first update
    assert first["rewards/chosen"] == 0 and first["rewards/rejected"] == 0 and abs(first["loss"] - LOG2) < 1e-3
    config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert config["r"] == 8 and set(config["target_modules"]) == {"q_proj", "v_proj"}  # the SFT adapter, continued
    assert Path(config["base_model_name_or_path"]).resolve() == tiny_base_dir.resolve()
    before, after = load_file(sft_adapter / "adapter_model.safetensors"), load_file(result.adapter_dir / "adapter_model.safetensors")
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)
    assert not (result.adapter_dir / "ref").exists()
    load_adapter(result.adapter_dir)


# ----------------------------------------------------------------------------- the cached reference (in-process, no Ray)


def dpo_trainer(data: Path, tokenizer, out: Path, cached: bool, steps: int = 4, model: ModelConfig | None = None):
    """The stage's DPOTrainer as the worker builds it (without DeepSpeed): the tiny config, the data set through the run's cache."""
    from trl import DPOConfig as TRLDPOConfig

    from medgo.train.dpo_trainer import DPOTrainer

    cfg = load_config(DPOConfig, "jobs/configs/dpo/tiny.yaml", [f"train.precompute_ref_log_probs={str(cached).lower()}", f"train.max_steps={steps}"])
    torch.manual_seed(cfg.train.seed)  # as the worker does before loading
    args = TRLDPOConfig(**trainer_kwargs(cfg, output_dir=str(out), dtype=torch.float32, use_gpu=False, deepspeed=False))
    dataset = cached_dataset(load_pairs(data), data.parent / "cache" / cache_key(data, cfg))
    policy = load_policy(model, tokenizer) if model else load_model(cfg.model, tokenizer)
    return DPOTrainer(model=policy, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config(cfg, model or cfg.model))


@pytest.fixture(scope="module")
def pairs_parquet(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dpo-data") / "data"
    prefs = build_preferences(["medgo://assets/feedback/feedback.jsonl"], ["medgo://assets/dpo/pairs.jsonl"])
    prefs.pairs = prefs.pairs[:PAIRS]
    prefs.write(out)
    return out / "pairs.parquet"


def counting_reference_passes(monkeypatch) -> list:
    from medgo.train.dpo_trainer import DPOTrainer

    calls, original = [], DPOTrainer.compute_ref_log_probs
    monkeypatch.setattr(DPOTrainer, "compute_ref_log_probs", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    return calls


def test_cached_reference_gives_the_uncached_loss_curve(pairs_parquet, tokenizer, tmp_path, monkeypatch):
    calls = counting_reference_passes(monkeypatch)
    cached = dpo_trainer(pairs_parquet, tokenizer, tmp_path / "cached", cached=True)
    precomputed = len(calls)
    assert precomputed == math.ceil(PAIRS / 4) and {"ref_chosen_logps", "ref_rejected_logps"} <= set(cached.train_dataset.column_names)
    cached.train()
    uncached = dpo_trainer(pairs_parquet, tokenizer, tmp_path / "uncached", cached=False)
    uncached.train()
    curve = [[r["loss"] for r in t.state.log_history if "loss" in r] for t in (cached, uncached)]
    assert len(curve[0]) == 4 and abs(curve[0][0] - LOG2) < 1e-4 and curve[0][-1] < curve[0][0]
    assert max(abs(a - b) for a, b in zip(*curve)) < 1e-4, curve


def test_a_resumed_run_reuses_the_cached_reference(pairs_parquet, tokenizer, tmp_path, monkeypatch):
    calls = counting_reference_passes(monkeypatch)
    first = dpo_trainer(pairs_parquet, load_tokenizer(), tmp_path / "scratch", cached=True)
    computed = len(calls)
    again = dpo_trainer(pairs_parquet, load_tokenizer(), tmp_path / "scratch", cached=True)  # a restarted worker: same scratch name
    assert len(calls) == computed, "the reference columns were computed again"
    assert torch.equal(torch.tensor(again.train_dataset["ref_chosen_logps"]), torch.tensor(first.train_dataset["ref_chosen_logps"]))
    folder = again.train_dataset.cache_files[0]["filename"]
    assert Path(folder).parent.parent == pairs_parquet.parent / "cache", "stored with the run's data"
    cfg = load_config(DPOConfig, "jobs/configs/dpo/tiny.yaml", ["train.precompute_ref_log_probs=true"])
    assert cache_key(pairs_parquet, cfg) != cache_key(pairs_parquet, load_config(DPOConfig, "jobs/configs/dpo/tiny.yaml", ["train.max_length=128"]))


@pytest.mark.parametrize("reference", ["base", "adapter"])
def test_the_lean_reference_pass_gives_trls_numbers(pairs_parquet, tokenizer, tmp_path, tiny_base_dir, sft_adapter, reference):
    """The cached reference scores only the completion tokens, yet its log-probabilities are TRL's: the base model
    (a new adapter switched off) or the continued adapter's frozen copy."""
    import trl

    model = ModelConfig(base_model=str(tiny_base_dir), adapter=str(sft_adapter)) if reference == "adapter" else None
    trainer = dpo_trainer(pairs_parquet, tokenizer, tmp_path / "out", cached=False, model=model)
    batch = next(iter(torch.utils.data.DataLoader(trainer.train_dataset, batch_size=8, collate_fn=trainer.data_collator)))
    scored = int(batch["completion_mask"].sum())
    assert scored < 0.6 * batch["input_ids"].numel(), "prompts and padding make up much of a batch"
    lean = torch.cat(trainer.compute_ref_log_probs(trainer.model, batch))
    full = torch.cat(trl.DPOTrainer.compute_ref_log_probs(trainer, trainer.model, batch))
    assert lean.shape == (16,) and (lean < -10).all()
    torch.testing.assert_close(lean, full, rtol=1e-6, atol=1e-3)
    if reference == "adapter":  # the frozen copy, not the trained policy and not the bare base
        with trainer.model.disable_adapter():
            base = torch.cat(trl.DPOTrainer.compute_ref_log_probs(trainer, trainer.model, batch))
        assert (lean - base).abs().max() > 1
