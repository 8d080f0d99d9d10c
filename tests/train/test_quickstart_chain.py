"""The quickstart's chain in the suite: pre-training -> SFT -> evaluation on held-out prompts.

The quickstart's own configs: its model pre-trained on the sample corpus (decontaminated,
tokenized and packed here, without the corpus build's other cleaning), its full-parameter SFT
stage on the training split (PromptCBLUE's layout), the evaluation of the pre-trained and the
tuned model on KUAKE-QIC's dev split with the PromptCBLUE evaluator (a reply is read when it is one
of the task's label words).  The parse rate of the replies rises.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import pack_corpus

from medgo.assets import iter_sample_corpus
from medgo.config import load_config
from medgo.corpus.config import CorpusConfig
from medgo.corpus.decontam import build_index
from medgo.eval.config import EvalConfig
from medgo.quickstart_table import task_figures
from medgo.train.pretrain_config import PretrainConfig
from medgo.train.sft_config import SFTConfig

CONFIGS = Path("jobs/configs")
TASK = "KUAKE-QIC"


@pytest.fixture(scope="module")
def chain(ray_session, tokenizer, tmp_path_factory):
    from medgo.eval.run import run as evaluate
    from medgo.train.pretrain import run as pretrain
    from medgo.train.sft import run as sft

    out = tmp_path_factory.mktemp("runs")
    build = load_config(CorpusConfig, CONFIGS / "corpus" / "tiny.yaml")
    index = build_index(build.decontam.eval_files, build.decontam.ngram)  # the build drops documents that overlap evaluation items
    corpus = pack_corpus(tokenizer, out / "corpus", [d for d in iter_sample_corpus() if index.first_match(d) is None], block_size=build.block_size)
    pre = pretrain(load_config(PretrainConfig, CONFIGS / "pretrain" / "quickstart.yaml", [f"data.corpus={corpus}", f"output_dir={out}"]))
    tuned = sft(load_config(SFTConfig, CONFIGS / "sft" / "quickstart.yaml", [f"model.base_model={pre.model_dir}", f"output_dir={out}"]))
    ev = load_config(EvalConfig, CONFIGS / "eval" / "quickstart.yaml", [f"output_dir={out}", f"cblue.tasks=[{TASK}]", "clinicalqa.enabled=false",
                                                                      f"models.0.model.base_model={pre.model_dir}", f"models.1.model.base_model={tuned.model_dir}"])  # fmt: skip
    evaluate(ev.model_copy(update={"models": ev.models[:2]}))
    return out / "eval" / "quickstart", tuned


def test_sft_raises_the_parse_rate_on_held_out_prompts(chain):
    eval_dir, tuned = chain
    parse, _, _, n = task_figures(eval_dir, TASK)
    assert n >= 50 and parse["sft"] > parse["pretrained"] and parse["sft"] >= 0.5, parse


def test_full_parameter_sft_writes_a_model_that_moved_every_weight(chain):
    _, tuned = chain
    assert tuned.adapter_dir is None and tuned.merged_dir is None
    base, model = (AutoModelForCausalLM.from_pretrained(d) for d in (tuned.base_dir, tuned.model_dir))
    before, after = dict(base.named_parameters()), dict(model.named_parameters())
    assert set(before) == set(after)
    assert [n for n in before if torch.equal(before[n], after[n])] == []


def test_each_run_records_its_split(chain):
    eval_dir, tuned = chain
    trained_on = (tuned.run_dir / "config.yaml").read_text(encoding="utf-8")
    assert "medgo://assets/quickstart/promptcblue/train.json" in trained_on and "dev.json" not in trained_on
    evaluated = (eval_dir / "config.yaml").read_text(encoding="utf-8")
    assert "medgo://assets/quickstart/promptcblue/dev.json" in evaluated
