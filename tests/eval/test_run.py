"""End to end: ``medgo eval run`` on the embedded samples, on local Ray: a saved tiny model
directory against the same directory plus a LoRA adapter (base vs tuned), side by side.

The tiny models are random, so scores are near zero: the assertions are on the artefacts, the
counts, and on every reported number being recomputable from the per-sample predictions.
"""

from __future__ import annotations

import json
import shutil

import pytest

from medgo.cli import main
from medgo.config import ConfigError, load_config
from medgo.eval import clinicalqa as cqa
from medgo.data.cblue import read_examples
from medgo.eval.config import CBLUE_TASKS, EvalConfig
from medgo.eval.metrics import ASSETS, TASKS
from medgo.eval.run import run


def jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def save_base_and_adapter(root, tokenizer):
    """The tiny model saved as a Hugging Face directory, and a random LoRA adapter for it."""
    from peft import LoraConfig, get_peft_model

    from medgo.config import ModelConfig
    from medgo.model import load_model

    base_dir, adapter_dir = root / "base", root / "adapter"
    model = load_model(ModelConfig(), tokenizer)
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)).save_pretrained(adapter_dir)
    return base_dir, adapter_dir


@pytest.fixture(scope="module")
def compare_run(ray_session, tokenizer, tmp_path_factory):
    """Base directory vs base + LoRA adapter on every task but MedDG, whose files are removed to be skipped."""
    root = tmp_path_factory.mktemp("eval")
    data = root / "cblue"
    shutil.copytree(ASSETS, data)
    shutil.rmtree(data / "MedDG")
    base, adapter = save_base_and_adapter(root, tokenizer)
    overrides = [
        f"models=[{{name: base, model: {{base_model: {base}}}}}, {{name: tuned, model: {{base_model: {base}, adapter: {adapter}}}}}]",
        f"output_dir={root / 'runs'}", f"cblue.data_dir={data}", "cblue.max_samples=2", "clinicalqa.max_samples=3",
        "clinicalqa.max_new_tokens=4", "generation.max_new_tokens=6", "retrieval.rerank=true", "retrieval.rerank_depth=10",
    ]  # fmt: skip
    cfg = load_config(EvalConfig, "jobs/configs/eval/compare.yaml", overrides)
    return cfg, run(cfg)


def test_report_artefacts(compare_run):
    cfg, results = compare_run
    d = cfg.run_dir()
    assert json.loads((d / "results.json").read_text(encoding="utf-8"))["models"] == ["base", "tuned"]
    assert (d / "config.yaml").is_file() and (d / "scores.png").read_bytes()[:4] == b"\x89PNG"
    md = (d / "report.md").read_text(encoding="utf-8")
    assert "| Task | Description | Metric | base | tuned |" in md and "| Model | Accuracy |" in md
    assert "- MedDG: missing file" in md and set(results["skipped"]) == {"MedDG"}
    names = [r["task"] for r in results["rows"]]
    expected = [n for t in CBLUE_TASKS if t != "MedDG" for n in ([f"{t} (utterance)", f"{t} (dialogue)"] if t == "IMCS-V2-SR" else [t])]
    assert names == expected  # the paper's Table 1 order, IMCS-V2-SR at both levels
    for row in results["rows"]:
        assert set(row["scores"]) == {"base", "tuned"} and all(0 <= v <= 100 for v in row["scores"].values() if v is not None)
        assert row["description"] and row["metric"]
    for m in ("base", "tuned"):
        avg = sum(r["scores"][m] or 0 for r in results["rows"]) / len(results["rows"])
        assert results["average"][m] == pytest.approx(avg, abs=1e-3)


@pytest.mark.parametrize("model", ["base", "tuned"])
def test_predictions_match_the_reported_counts(compare_run, model):
    cfg, results = compare_run
    out = cfg.run_dir() / "predictions" / model
    rows = {r["task"]: r for r in results["rows"]}
    for task in CBLUE_TASKS:
        if task in {"MedDG", "KUAKE-IR"}:
            continue
        preds = jsonl(out / f"{task}.jsonl")
        examples, _ = read_examples(task, TASKS[task].gold_path, 2)
        assert len(preds) == len(examples)
        assert all({"keys", "raw", "parsed", "parse_ok"} <= p.keys() for p in preds)
        name = "IMCS-V2-SR (utterance)" if task == "IMCS-V2-SR" else task
        level = [p for p in preds if p["level"] in (None, "utterance")]
        assert rows[name]["parsed"][model] == [sum(p["parse_ok"] for p in level), len(level)]
        details = results["details"][model][task]
        assert details["n_gold"] >= 1 and details["score"] == (rows[name]["scores"][model])
    ranking = (out / "KUAKE-IR_ranking.tsv").read_text(encoding="utf-8").splitlines()
    assert len(ranking) == 2 * 10  # two queries, top 10 each


@pytest.mark.parametrize("model", ["base", "tuned"])
def test_clinicalqa_numbers_recompute_from_predictions(compare_run, model):
    cfg, results = compare_run
    qa = results["clinicalqa"][model]
    preds = jsonl(cfg.run_dir() / "predictions" / model / "ClinicalQA.jsonl")
    orig = [p for p in preds if not p["uid"].endswith("#shuffled")]
    shuf = {p["uid"].removesuffix("#shuffled"): p for p in preds if p["uid"].endswith("#shuffled")}
    assert qa["n"] == len(orig) == len(shuf) == 6  # 3 from the JSONL file, 3 from the CSV file
    assert qa["accuracy"] == pytest.approx(100 * sum(p["parsed"] == p["answer"] for p in orig) / 6)
    assert qa["unparsed_rate"] == pytest.approx(100 * sum(not p["parse_ok"] for p in orig) / 6)
    assert all(p["loglik_pick"] == max("ABCD", key=p["loglik"].get) for p in preds)
    assert qa["accuracy_loglik"] == pytest.approx(100 * sum(p["loglik_pick"] == p["answer"] for p in orig) / 6)
    same = sum(shuf[p["uid"]]["perm"]["ABCD".index(shuf[p["uid"]]["loglik_pick"])] == p["loglik_pick"] for p in orig)
    assert qa["consistency_loglik"] == pytest.approx(100 * same / 6)
    assert all(s["perm"] != "ABCD" and sorted(s["perm"]) == list("ABCD") for s in shuf.values())


def test_the_adapter_changed_the_model(compare_run):
    cfg, _ = compare_run
    qa = {m: jsonl(cfg.run_dir() / "predictions" / m / "ClinicalQA.jsonl") for m in ("base", "tuned")}
    assert [p["uid"] for p in qa["base"]] == [p["uid"] for p in qa["tuned"]]
    for b, t in zip(qa["base"], qa["tuned"]):
        assert all(abs(b["loglik"][k] - t["loglik"][k]) > 1e-4 for k in "ABCD")


def test_promptcblue_metric_set_run(ray_session, tmp_path):
    code = main(["eval", "run", "--config", "jobs/configs/eval/promptcblue.yaml", "--output", str(tmp_path), "--set", "cblue.max_samples=1", "--set", "generation.max_new_tokens=4"])
    assert code == 0
    results = json.loads((tmp_path / "eval" / "promptcblue" / "results.json").read_text(encoding="utf-8"))
    assert results["metric_set"] == "promptcblue" and len(results["rows"]) == 18 and not results["skipped"]
    preds = jsonl(tmp_path / "eval" / "promptcblue" / "predictions" / "tiny" / "promptcblue_predictions.jsonl")
    assert len(preds) == 18 and all(p["sample_id"] for p in preds)


def test_bad_inputs_fail_before_any_model_runs(tmp_path):
    with pytest.raises(ConfigError, match="unknown task"):
        load_config(EvalConfig, None, ["cblue.tasks=[CMeEE-V2, NOPE]"])
    with pytest.raises(ConfigError, match="repeated: a"):
        load_config(EvalConfig, None, ["models=[{name: a}, {name: a}]"])
    bad = tmp_path / "qa.jsonl"
    bad.write_text('{"question": "q", "options": {"A": "1", "B": "2", "C": "3", "D": "4"}, "answer": "E"}\n', encoding="utf-8")
    cfg = load_config(EvalConfig, None, [f"output_dir={tmp_path}", f"clinicalqa.files=[{bad}]", "cblue.tasks=[]"])
    with pytest.raises(cqa.ClinicalQAError, match=r"qa.jsonl:1: 'answer'"):
        run(cfg)
    assert not (tmp_path / "eval").exists()
    cfg = load_config(EvalConfig, None, [f"output_dir={tmp_path}", f"cblue.data_dir={tmp_path / 'nope'}"])
    with pytest.raises(FileNotFoundError, match="CBLUE data directory not found"):
        run(cfg)
    cfg = load_config(EvalConfig, None, [f"output_dir={tmp_path}", "cblue.tasks=[]", "clinicalqa.enabled=false"])
    with pytest.raises(ValueError, match="nothing to evaluate"):
        run(cfg)
    cfg = load_config(EvalConfig, None, [f"output_dir={tmp_path}", "cblue.tasks=[CHIP-CTC]", "models=[{name: x, model: {base_model: /no/such/model}}]"])
    with pytest.raises(FileNotFoundError, match="not found: /no/such/model"):
        run(cfg)
    assert not (tmp_path / "eval").exists()

