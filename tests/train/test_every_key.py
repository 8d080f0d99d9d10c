"""Every key of every training stage's config is read: set to a distinctive value, it changes what reaches its consumer.

The fields are enumerated from the config classes, so a new field without a consumer fails here.
Consumers are the driver-side constructions the stages use (no training run): TRL's arguments and
the DeepSpeed dict, ``peft.LoraConfig``, the data pipeline, Ray Train's ScalingConfig /
RunConfig / FailureConfig / CheckpointConfig, the run directory, the loop's cadence, the metrics
sinks, the fault drill, the export and the model each worker builds.
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict

import numpy as np
import pytest
import torch
from pydantic import BaseModel

from medgo.config import ModelConfig, build_config
from medgo.model.loading import load_model, model_config_for, resolve_attn_implementation, resolve_dtype
from medgo.model.tokenizer import load_tokenizer
from medgo.plan import PlanConfig, make_plan, render
from medgo.train import dpo, kto, launcher, preference_stage, sft
from medgo.train.callbacks import stage_callbacks
from medgo.train.data import validation_blocks
from medgo.train.deepspeed_config import deepspeed_config
from medgo.train.flops import peak_flops
from medgo.train.dpo_config import DPOConfig
from medgo.train.kto_config import KTOConfig
from medgo.train.checkpoint import TrainState
from medgo.train.pretrain import Cadence, block_stream, export_shard_bytes, metrics_sink, prepare
from medgo.train.pretrain_config import PretrainConfig
from medgo.train.sft_config import SFTConfig
from medgo.train.trl_stage import trainer_kwargs
from medgo.train.worker import seed_worker

from conftest import FakeShard, pack_corpus

EXEMPT = {
    "model.base_model": "names a model directory: loaded by medgo.model.loading (tests/model), written for workers by base_model.materialise_base (test_sft)",
    "model.tokenizer": "names a tokenizer directory: loaded by medgo.model.loading (tests/model)",
    "model.adapter": "names an adapter directory: continued by DPO and KTO (test_dpo.test_dpo_continues_an_sft_adapter_against_the_sft_policy, test_kto)",
    "ray.address": "handed to ray.init by medgo.ray_utils.init_ray (the two-node run connects by address)",
}
"""Keys whose consumer needs a real directory or cluster; each is exercised by the test named."""


# ----------------------------------------------------------------------------- enumerating the keys


def _model_class(annotation) -> type[BaseModel] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def leaves(cls: type[BaseModel], prefix: str = "") -> list[str]:
    """Every leaf key of a config class; a list of sections is entered at item 0 (``data.sources.0.path``)."""
    keys = []
    for name, field in cls.model_fields.items():
        inner = _model_class(field.annotation)
        is_list = typing.get_origin(field.annotation) is list
        if inner is not None:
            keys += leaves(inner, f"{prefix}{name}.0." if is_list else f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def get(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def set_key(data: dict, key: str, value) -> dict:
    node = data
    *path, last = key.split(".")
    for part in path:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    return data


def annotation_of(cls: type[BaseModel], key: str):
    node, field = cls, None
    for part in key.split("."):
        if part.isdigit():
            continue
        field = node.model_fields[part]
        node = _model_class(field.annotation) or node
    return field.annotation


def distinctive(cls: type[BaseModel], cfg, key: str, special: dict):
    """A value for ``key`` unlike its current one: from ``special``, else by type."""
    if key in special:
        return special[key]
    current, annotation = get(cfg, key), annotation_of(cls, key)
    options = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else ()
    if options:
        return next(o for o in options if o != current)
    if isinstance(current, bool):
        return not current
    if isinstance(current, int) or (current is None and int in typing.get_args(annotation)):
        return 2 * current if current else 2
    if isinstance(current, float) or (current is None and float in typing.get_args(annotation)):
        return current / 2 if current else 0.25
    raise AssertionError(f"{key}: give a distinctive value in the test's table (current {current!r})")


def variant(cls, base: dict, key: str, value):
    return build_config(cls, set_key(json.loads(json.dumps(base)), key, value), f"{key}={value!r}")


# ----------------------------------------------------------------------------- what reaches the consumers


def ray_view(cfg) -> dict:
    c = launcher.ray_configs(cfg)
    s, r = c["scaling_config"], c["run_config"]
    return {"scaling": (s.num_workers, s.use_gpu, s.resources_per_worker, s.placement_strategy), "backend": c["torch_config"].backend,
            "run": (r.name, r.storage_path, r.failure_config.max_failures, r.checkpoint_config.num_to_keep)}  # fmt: skip


def model_view(model: ModelConfig, tokenizer) -> dict:
    built = load_model(model, tokenizer)
    return {"dtype": resolve_dtype(model.dtype), "attn": resolve_attn_implementation(model.attn_implementation),
            "config": model_config_for(model, tokenizer).to_dict(), "weights": float(next(built.parameters()).detach().sum())}  # fmt: skip


def callbacks_view(cfg, tmp_path) -> list:
    metrics, _report, drill = stage_callbacks(cfg, tmp_path, "storage")
    return [metrics.where[3:], (drill.drill.fail_at, drill.drill.stop_at)]


def seed_view(cfg) -> int:
    seed_worker(cfg.train)
    return torch.initial_seed()


def common_view(cfg, tmp_path) -> dict:
    return {"ray": ray_view(cfg), "run_dir": str(cfg.run_dir()), "seed": seed_view(cfg)}


def pretrain_view(cfg: PretrainConfig, key: str, tmp_path, tokenizer) -> dict:
    plan = prepare(cfg)
    cadence = Cadence.of(cfg, plan.total_steps)
    sink = metrics_sink(cfg, str(tmp_path / "sink"), 0)
    view = {
        **common_view(cfg, tmp_path),
        "plan": asdict(plan),
        "deepspeed": deepspeed_config(cfg.deepspeed, cfg.train, dtype=resolve_dtype(cfg.model.dtype), use_gpu=False,
                                      world_size=cfg.ray.num_workers, total_steps=plan.total_steps),  # fmt: skip
        "cadence": [(cadence.logs(s), cadence.evaluates(s), cadence.saves(s)) for s in range(1, plan.total_steps + 1)],
        "metrics": (sink.tb is not None, sink.ray_metrics, peak_flops(None, cfg.metrics.peak_flops_per_device)),
        "drill": callbacks_view(cfg, tmp_path)[1],
        "export": export_shard_bytes(cfg, plan.total_steps, plan.total_steps),
        "validation": len(validation_blocks(cfg.data.corpus, cfg.data.eval_blocks)),
        "stream": stream_view(cfg),
    }
    sink.close()
    if key.startswith("model.") or key == "train.activation_checkpointing":
        model = launcher.checkpoint_activations(load_model(cfg.model, tokenizer), cfg.train.activation_checkpointing)
        view["model"] = {**model_view(cfg.model, tokenizer), "checkpointing": model.is_activation_checkpointing}
    return view


def stream_view(cfg: PretrainConfig) -> list[list[int]]:
    """The first 16 micro-batches the worker's stream yields from 3,000 numbered one-token blocks."""
    stream = block_stream(cfg, FakeShard([np.array([i]) for i in range(3000)]), 0, TrainState(world_size=1))
    return [next(stream)["input_ids"].flatten().tolist() for _ in range(16)]


def lora_view(cfg) -> dict | None:
    peft = preference_stage.peft_config(cfg, cfg.model) if isinstance(cfg, (DPOConfig, KTOConfig)) else cfg.lora.peft() if cfg.lora else None
    return peft.to_dict() if peft else None


def trl_view(cfg, key: str, tmp_path, tokenizer) -> dict:
    view = {
        **common_view(cfg, tmp_path),
        "args": trainer_kwargs(cfg, output_dir="x", dtype=resolve_dtype(cfg.model.dtype), use_gpu=False),
        "callbacks": callbacks_view(cfg, tmp_path),
        "lora": lora_view(cfg),
    }
    if key.startswith("model."):
        view["model"] = model_view(cfg.model, tokenizer)
    if key.startswith("data.") and isinstance(cfg, SFTConfig):
        rows, counts, bad = sft.read_mixture(cfg, tokenizer)
        view["data"] = (rows, counts, [str(b) for b in bad])
    if key.startswith("data.") and isinstance(cfg, DPOConfig):
        path, summary = dpo.build_data(cfg, tokenizer, tmp_path / "dpo-data")
        view["data"] = (summary, path.read_bytes())
    if key.startswith("data.") and isinstance(cfg, KTOConfig):
        path, summary = kto.build_data(cfg, tokenizer, tmp_path / "kto-data")
        view["data"] = (summary, path.read_bytes())
    if key == "export.merged":
        view["export"] = cfg.export.merged  # sft.run: merge_adapter(...) if cfg.export.merged (test_sft writes merged/)
    return view


def plan_view(cfg: PlanConfig, key: str, tmp_path, tokenizer) -> dict:
    plan = make_plan(cfg)
    return {"plan": asdict(plan), "text": render(cfg, plan), "run_dir": str(cfg.run_dir())}


# ----------------------------------------------------------------------------- the stages


@pytest.fixture(scope="module")
def tokenizer_():
    return load_tokenizer()


@pytest.fixture(scope="module")
def corpora(packed_corpus, tmp_path_factory, tokenizer_):
    from medgo.assets import iter_sample_corpus

    other = pack_corpus(tokenizer_, tmp_path_factory.mktemp("other-corpus"), list(iter_sample_corpus())[:40], block_size=32)
    return str(packed_corpus), str(other)


def stages(tmp_path, corpora) -> dict:
    """Per stage: the config class, its baseline, the distinctive values types cannot give, the consumers."""
    corpus, other = corpora
    messages = tmp_path / "one.jsonl"
    messages.write_text(json.dumps({"question": "问", "answer": "答"}, ensure_ascii=False) + "\n", encoding="utf-8")
    common = {"run_name": "other", "output_dir": str(tmp_path / "elsewhere"), "ray.storage_path": str(tmp_path / "store"),
              "lora.target_modules": ["q_proj"], "lora.modules_to_save": ["lm_head"], "model.dtype": "bfloat16",
              "model.attn_implementation": "eager"}  # fmt: skip
    sources = [{"path": "medgo://assets/sft/qa.jsonl", "format": "qa", "max_samples": 8},
               {"path": "medgo://assets/cblue/CHIP-STS/CHIP-STS_train.json", "format": "cblue", "task": "CHIP-STS", "max_samples": 8}]  # fmt: skip
    return {
        PretrainConfig: ({"data": {"corpus": corpus, "eval_blocks": 4}, "output_dir": str(tmp_path / "runs")},
                         {**common, "data.corpus": other, "data.eval_blocks": 1, "train.warmup_steps": 3.0, "train.eval_steps": 3,
                          "train.save_steps": 3}, pretrain_view),  # fmt: skip
        SFTConfig: ({"data": {"sources": sources}, "output_dir": str(tmp_path / "runs")},
                    {**common, "data.sources.0.path": str(messages), "data.sources.0.name": "other", "data.sources.0.system": "你是医生。",
                     "data.sources.0.task": "CHIP-STS", "data.sources.0.max_samples": 3}, trl_view),  # fmt: skip
        DPOConfig: ({"output_dir": str(tmp_path / "runs")}, {**common, "data.feedback": [], "data.pairs": []}, trl_view),
        KTOConfig: ({"output_dir": str(tmp_path / "runs")}, {**common, "data.feedback": [], "data.pairs": []}, trl_view),
        PlanConfig: ({"output_dir": str(tmp_path / "runs")},
                     {**common, "pretrain": "jobs/configs/pretrain/tiny.yaml", "architecture": "qwen2_7b", "cluster.gpu": "H100"}, plan_view),
    }


SOURCE_TASK = "data.sources.0.task"
CONTEXT = {"ray.gpus_per_worker": ("ray.use_gpu", True)}
"""A key read only when another is set: both sides of the comparison get the other one."""


@pytest.mark.parametrize("cls", [PretrainConfig, SFTConfig, DPOConfig, KTOConfig, PlanConfig], ids=lambda c: c.__name__)
def test_every_key_reaches_its_consumer(cls, tmp_path, corpora, tokenizer_):
    base, special, view = stages(tmp_path, corpora)[cls]
    cfg = build_config(cls, base)
    keys = [k for k in leaves(cls) if k not in EXEMPT]
    assert len(keys) > 10
    unread = []
    for key in keys:
        data = cfg.model_dump(mode="json")
        if key in CONTEXT:
            data = set_key(data, *CONTEXT[key])
            cfg_key = build_config(cls, data)
        else:
            cfg_key = cfg
        if key == SOURCE_TASK:  # a task is only allowed on a cblue source: vary the second source's
            key_used = "data.sources.1.task"
            value = "KUAKE-QIC"
        else:
            key_used, value = key, distinctive(cls, cfg_key, key, special)
        before = view(cfg_key, key, tmp_path / "a", tokenizer_)
        changed = variant(cls, data, key_used, value)
        after = view(changed, key, tmp_path / "b", tokenizer_)
        if repr(before) == repr(after):
            unread.append(f"{key}={value!r}")
    assert not unread, f"{cls.__name__}: these keys change nothing any consumer receives: {unread}"


def test_the_enumeration_sees_every_section():
    keys = set(leaves(SFTConfig))
    assert {"train.learning_rate", "train.max_length", "deepspeed.zero_stage", "lora.lora_alpha", "ray.max_failures",
            "metrics.tensorboard", "debug.fail_at_step", "data.sources.0.path", "export.merged", "model.tiny.seed"} <= keys  # fmt: skip
    assert {"train.eval_steps", "train.min_lr_ratio", "data.eval_blocks", "export.shard_size_gb", "metrics.peak_flops_per_device"} <= set(leaves(PretrainConfig))
    assert {"train.beta", "train.loss_type", "data.feedback"} <= set(leaves(DPOConfig))
    assert {"train.desirable_weight", "train.undesirable_weight", "train.loss_type", "data.raw_feedback_unsafe"} <= set(leaves(KTOConfig))
