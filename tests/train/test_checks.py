"""Bad input is refused by the driver, with the bad key or file named, before any worker starts."""

from __future__ import annotations

import json
import shutil

import pytest

from medgo.config import ConfigError, load_config
from medgo.train.checkpoint import TrainState
from medgo.train.data import ShardMismatchError
from medgo.train.pretrain import prepare
from medgo.train.pretrain_config import PretrainConfig

TINY = "jobs/configs/pretrain/tiny.yaml"


def config(corpus, tmp_path, *overrides) -> PretrainConfig:
    return load_config(PretrainConfig, TINY, [f"data.corpus={corpus}", f"output_dir={tmp_path}", *overrides])


def test_a_good_config_plans_its_steps(packed_corpus, tmp_path):
    manifest = json.loads((packed_corpus / "manifest.json").read_text())
    plan = prepare(config(packed_corpus, tmp_path, "train.per_device_train_batch_size=3", "train.gradient_accumulation_steps=2"))
    per_worker = manifest["splits"]["train"]["blocks"] // 2
    assert plan.steps_per_epoch == per_worker // 3 // 2 == plan.total_steps
    assert plan.block_size == manifest["block_size"] and plan.resume_step == 0
    assert (tmp_path / "pretrain" / "tiny" / "config.yaml").is_file()


def test_batch_that_cannot_be_filled_names_the_keys(packed_corpus, tmp_path):
    with pytest.raises(ConfigError, match=r"train\.per_device_train_batch_size .* train\.gradient_accumulation_steps .* ray\.num_workers"):
        prepare(config(packed_corpus, tmp_path, "train.per_device_train_batch_size=512", "train.gradient_accumulation_steps=8"))
    assert not (tmp_path / "pretrain").exists(), "nothing is written for a config that fails its checks"


def test_missing_corpus_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        prepare(config(tmp_path / "nope", tmp_path))


def test_missing_shard_file_is_named(packed_corpus, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(packed_corpus, broken)
    (broken / "shards" / "train" / "part-00000.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="part-00000.parquet"):
        prepare(config(broken, tmp_path))


def test_shards_from_another_tokenizer_are_refused(packed_corpus, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(packed_corpus, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["tokenizer_fingerprint"] = "0123456789abcdef"
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardMismatchError, match="0123456789abcdef") as err:
        prepare(config(other, tmp_path))
    theirs = json.loads((packed_corpus / "manifest.json").read_text())["tokenizer_fingerprint"]
    assert theirs in str(err.value)


def test_blocks_longer_than_the_model_context(packed_corpus, tmp_path):
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        prepare(config(packed_corpus, tmp_path, "model.tiny.max_position_embeddings=32"))


def test_fault_injection_beyond_the_run(packed_corpus, tmp_path):
    with pytest.raises(ConfigError, match=r"debug\.fail_at_step"):
        prepare(config(packed_corpus, tmp_path, "train.max_steps=5", "debug.fail_at_step=9"))


def test_resume_with_another_worker_count_is_refused(packed_corpus, tmp_path):
    ckpt = tmp_path / "pretrain" / "tiny" / "checkpoint_step_00000010"
    ckpt.mkdir(parents=True)
    TrainState(step=10, world_size=4).write(ckpt)
    with pytest.raises(ConfigError, match=r"4 workers at step 10.*ray\.num_workers=4"):
        prepare(config(packed_corpus, tmp_path))
    assert prepare(config(packed_corpus, tmp_path, "ray.num_workers=4", "train.per_device_train_batch_size=1")).resume_step == 10
