"""SFT data without Ray: every format to messages, bad records named by file and line, the
assistant-only label mask as TRL's SFTTrainer builds it, CBLUE prompts shared with evaluation."""

from __future__ import annotations

import json

import pytest
import torch

from medgo.config import load_config
from medgo.data.cblue import read_examples
from medgo.data.prompts import build_prompt, target_text
from medgo.train.sft import FIXED, build_data, packed_rows
from medgo.train.sft_config import SFTConfig, default_sources
from medgo.train.sft_data import SFTSource, apply_weight, read_source

CONVERSATION = [
    {"role": "user", "content": "我最近总是头痛，需要做什么检查？"},
    {"role": "assistant", "content": "建议先测量血压，必要时做头颅CT。"},
    {"role": "user", "content": "血压是150/95。"},
    {"role": "assistant", "content": "血压偏高，请到心内科就诊。"},
]


def test_every_embedded_sample_reads_cleanly():
    for source in default_sources():
        good, bad = read_source(source)
        assert good and not bad, (source.path, bad[:3])
        assert all(m[-1]["role"] == "assistant" for m in good)


def test_bad_records_are_reported_with_file_and_line_and_reading_goes_on(tmp_path, tokenizer):
    path = tmp_path / "qa.jsonl"
    lines = [
        {"question": "什么是高血压？", "answer": "血压持续升高。"},
        "{not json",
        {"question": "没有答案"},
        {"question": "  ", "answer": "空问题"},
        {"question": "糖尿病的诊断标准？", "answer": "空腹血糖≥7.0 mmol/L。"},
    ]
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    msgs = tmp_path / "chat.jsonl"
    msgs.write_text(json.dumps({"messages": [{"role": "doctor", "content": "x"}]}) + "\n" + json.dumps({"messages": CONVERSATION[:3]}) + "\n", encoding="utf-8")
    cfg = load_config(SFTConfig, None, [f"output_dir={tmp_path}"])
    cfg.data.sources = [SFTSource(path=str(path), format="qa"), SFTSource(path=str(msgs), format="messages")]
    summary = build_data(cfg, tokenizer, tmp_path)
    assert summary.records == 2 and summary.counts["qa"] == {"read": 5, "rejected": 3, "truncated": 0, "train": 2}
    where = {(b.path, b.where): b.reason for b in summary.bad}
    assert "not valid JSON" in where[(str(path), "line 2")]
    assert "'answer'" in where[(str(path), "line 3")] and "'question'" in where[(str(path), "line 4")]
    assert "role 'doctor'" in where[(str(msgs), "line 1")] and "end with an assistant" in where[(str(msgs), "line 2")]
    rejected = (tmp_path / "data" / "rejected.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rejected) == 5 and json.loads(rejected[0])["where"] == "line 2"


def test_too_long_prompt_is_rejected_with_its_line(tmp_path, tokenizer):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "头痛" * 300, "answer": "请就诊。"}, ensure_ascii=False) + "\n", encoding="utf-8")
    cfg = load_config(SFTConfig, None, ["train.max_length=64"])
    cfg.data.sources = [SFTSource(path=str(path), format="qa")]
    summary = build_data(cfg, tokenizer, tmp_path)
    assert summary.records == 0 and summary.bad[0].where == "line 1" and "max_length=64" in summary.bad[0].reason


def test_safety_prompts_and_cblue_use_their_own_locations():
    good, bad = read_source(SFTSource(path="medgo/assets/sft/safety_prompts.json", format="safety_prompts", max_samples=3, system="你是医学助手。"))
    assert len(good) == 3 and not bad and good[0][0] == {"role": "system", "content": "你是医学助手。"}
    path = "medgo/assets/cblue/CHIP-STS/CHIP-STS_train.json"
    good, _ = read_source(SFTSource(path=path, format="cblue", task="CHIP-STS"))
    examples, _ = read_examples("CHIP-STS", path)
    assert good[0][0]["content"] == build_prompt("CHIP-STS", examples[0])[0]["content"], "SFT asks exactly what evaluation asks"
    assert good[0][1]["content"] == target_text("CHIP-STS", examples[0])


def test_promptcblue_rows_are_asked_and_answered_as_the_evaluator_scores_them(tmp_path):
    rows = [json.loads(line) for line in open("medgo/assets/promptcblue/dev.json", encoding="utf-8")][:3]
    path = tmp_path / "train.json"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + json.dumps({"input": "没有答案"}) + "\n", encoding="utf-8")
    good, bad = read_source(SFTSource(path=str(path), format="promptcblue"))
    assert good == [[{"role": "user", "content": r["input"].strip()}, {"role": "assistant", "content": r["target"].strip()}] for r in rows]
    assert [(b.where, b.reason) for b in bad] == [("line 4", "missing or empty field 'target'")]


def test_weight_repeats_and_subsamples():
    records = list(range(10))
    assert apply_weight(records, 2.0, 0) == records * 2
    half = apply_weight(records, 0.5, 0)
    assert len(half) == 5 and half == apply_weight(records, 0.5, 0)


@pytest.fixture(scope="module")
def collated(tokenizer, tmp_path_factory):
    """One two-turn conversation through TRL's SFTTrainer tokenization and collator (no Ray, no DeepSpeed)."""
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from medgo.config import ModelConfig
    from medgo.model.loading import load_model

    model = load_model(ModelConfig(base_model="tiny"), tokenizer)
    args = TRLSFTConfig(output_dir=str(tmp_path_factory.mktemp("trl")), assistant_only_loss=True, max_length=512, bf16=False, activation_checkpointing=False, report_to="none", use_cpu=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list([{"messages": CONVERSATION}]), processing_class=tokenizer)
    return trainer.data_collator([trainer.train_dataset[0]])


def test_assistant_only_loss_masks_every_prompt_token(collated, tokenizer):
    ids, labels = collated["input_ids"][0], collated["labels"][0]
    ours = tokenizer.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True)["input_ids"]
    assert ids.tolist() == ours
    expected = torch.full_like(ids, -100)
    for turn in (1, 3):  # each assistant reply: its content and <|im_end|>, nothing of the prompt or header
        before = len(tokenizer.apply_chat_template(CONVERSATION[:turn], tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"])
        reply = tokenizer(CONVERSATION[turn]["content"] + "<|im_end|>", add_special_tokens=False)["input_ids"]
        assert ids[before : before + len(reply)].tolist() == reply
        expected[before : before + len(reply)] = ids[before : before + len(reply)]
    assert torch.equal(labels, expected)
    assert (labels != -100).sum() < len(ids) // 2 and (labels[:10] == -100).all()


# ----------------------------------------------------------------------------- packing


def test_packed_rows_match_trl_best_fit_decreasing():
    # cut at 256: [256, 256, 200 + 50, 100 + 30]
    assert packed_rows([100, 200, 50, 300, 30, 256], 256) == 4
    assert packed_rows([10] * 30, 100) == 3


@pytest.mark.parametrize("packing", [False, True], ids=["sdpa", "sdpa_packed"])
def test_a_packed_batch_scores_every_conversation_as_if_alone(tokenizer, tmp_path, packing):
    """Packing with per-conversation positions isolates conversations (SDPA on the CPU, with transformers'
    block-diagonal mask or the stage's per-conversation attention): the packed loss is the token-weighted mean
    of each conversation's own loss; the same row without positions (cross-attention) is not."""
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from medgo.config import ModelConfig
    from medgo.train.sft import load_policy

    model = load_policy(ModelConfig(base_model="tiny"), tokenizer, packing).eval()
    assert model.config._attn_implementation == ("sdpa_packed" if packing else "sdpa")
    conversations, _ = read_source(SFTSource(path="medgo://assets/sft/qa.jsonl", format="qa", max_samples=12))
    args = TRLSFTConfig(output_dir=str(tmp_path), max_length=512, per_device_train_batch_size=2, packing=True, bf16=False, activation_checkpointing=False, report_to="none", use_cpu=True, **FIXED)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list([{"messages": m} for m in conversations]), processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # padding-free: one flat row
    positions = batch["position_ids"][0]
    bounds = [*(positions == 0).nonzero().flatten().tolist(), positions.numel()]
    assert len(bounds) - 1 >= 4, "several conversations in the packed batch"
    with torch.no_grad():
        packed = model(**batch).loss.item()
        parts = [(batch["input_ids"][:, a:b], batch["labels"][:, a:b]) for a, b in zip(bounds, bounds[1:])]
        scored = [(model(input_ids=ids, labels=labels).loss.item(), int((labels[:, 1:] != -100).sum())) for ids, labels in parts]
        leaking = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss.item()
    alone = sum(loss * n for loss, n in scored) / sum(n for _, n in scored)
    assert abs(packed - alone) < 1e-5, (packed, alone)
    assert abs(leaking - alone) > 1e-4, "the check must be able to see conversations attending to each other"


def test_per_conversation_attention_gives_sdpas_numbers(tokenizer):
    """``sdpa_packed`` against plain SDPA on the same weights: a padded batch, a packed row told by its
    positions alone (and by ``cu_seq_lens_q``), two packed rows, and greedy generation with a cache."""
    from medgo.config import ModelConfig
    from medgo.model.loading import load_model
    from medgo.train.packed_attention import use_packed_attention

    sdpa = load_model(ModelConfig(base_model="tiny"), tokenizer).eval()
    packed = use_packed_attention(load_model(ModelConfig(base_model="tiny"), tokenizer).eval())
    assert packed.config._attn_implementation == "sdpa_packed"
    torch.manual_seed(0)
    ids = torch.randint(10, 8000, (3, 40))
    mask = torch.ones_like(ids)
    mask[1, 25:], mask[2, 10:] = 0, 0
    with torch.no_grad():
        a, b = (m(input_ids=ids, attention_mask=mask).logits for m in (sdpa, packed))
        assert a.abs().max() > 0.01
        torch.testing.assert_close(a[mask.bool()], b[mask.bool()], rtol=1e-5, atol=1e-5)
        row = torch.cat([ids[0, :40], ids[1, :25], ids[2, :10]])[None]
        positions = torch.cat([torch.arange(40), torch.arange(25), torch.arange(10)])[None]
        cu = torch.tensor([0, 40, 65, 75], dtype=torch.int32)
        want = sdpa(input_ids=row, position_ids=positions, use_cache=False).logits
        alone = torch.cat([sdpa(input_ids=row[:, s:e]).logits for s, e in zip(cu[:-1], cu[1:])], dim=1)
        torch.testing.assert_close(want, alone, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(packed(input_ids=row, position_ids=positions, use_cache=False).logits, want, rtol=1e-5, atol=1e-5)
        got = packed(input_ids=row, position_ids=positions, cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=40, max_length_k=40, use_cache=False).logits
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        two = torch.cat([row, torch.cat([ids[2, :10], ids[1, :25], ids[0, :40]])[None]])
        two_positions = torch.cat([positions, torch.cat([torch.arange(10), torch.arange(25), torch.arange(40)])[None]])
        torch.testing.assert_close(packed(input_ids=two, position_ids=two_positions, use_cache=False).logits, sdpa(input_ids=two, position_ids=two_positions, use_cache=False).logits, rtol=1e-5, atol=1e-5)
        prompt = ids[:1, :12]
        assert torch.equal(sdpa.generate(prompt, max_new_tokens=8, do_sample=False), packed.generate(prompt, max_new_tokens=8, do_sample=False))
