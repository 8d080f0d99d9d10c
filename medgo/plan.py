"""``medgo plan``: will a pre-training run fit, and how long will it take?

    medgo plan --config jobs/configs/plan/qwen2_72b.yaml
    medgo plan --config jobs/configs/plan/qwen2_72b.yaml --set architecture=qwen2_7b

It reads a pre-training config (``pretrain``: batch, DeepSpeed, activation checkpointing,
attention, workers = GPUs, steps or epochs) and a model architecture (``architecture``: a shipped
preset with the public Qwen2 sizes, ``qwen2_0_5b``, ``qwen2_1_5b``, ``qwen2_7b``, ``qwen2_72b``,
or a ``config.json`` path); the plan config itself holds only what a pre-training config lacks:
the GPUs (``cluster``), the assumed MFU, and the corpus figures when the corpus the pre-training
config names is not built on this machine (``corpus``).

It prints, per GPU under ZeRO-3 with bf16 AdamW: parameters, gradients and optimizer states
(DeepSpeed's accounting: 2 + 4 + 12 bytes per parameter, divided over all GPUs, plus the largest
layer gathered whole), activations at the configured micro-batch, block size and checkpointing,
the logits of the loss, and a runtime reserve; then total training FLOPs and the wall-clock time
at the stated MFU.  It also writes ``plan.json`` and ``plan.md`` to ``<output_dir>/plan/<run_name>``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import ClassVar

from pydantic import Field

from medgo.config import ConfigError, Section, StageConfig, load_config
from medgo.data.paths import resolve_path
from medgo.train.flops import Architecture, peak_flops
from medgo.train.pretrain_config import PretrainConfig

GiB = 2**30
PRESETS = "medgo://assets/architectures"


class ClusterSpec(Section):
    """The GPUs: ``pretrain``'s ``ray.num_workers`` of them, one per worker."""

    gpus_per_node: int = Field(8, gt=0)
    gpu: str = "A100-80GB"
    """Device name; its bf16 peak is looked up (A100, H100, H200) unless ``peak_flops`` is given."""
    gpu_memory_gb: float = Field(80, gt=0)
    peak_flops: float | None = Field(None, gt=0)
    runtime_reserve_gb: float = Field(6.0, ge=0)
    """CUDA context, NCCL buffers and allocator fragmentation, per GPU."""


class CorpusSpec(Section):
    """The corpus ``pretrain``'s ``data.corpus`` will hold, used when its ``manifest.json`` is not there."""

    tokens: float = Field(14e9, gt=0)
    """Training tokens of one epoch."""
    block_size: int = Field(4096, gt=0)
    """Tokens per packed block (the sequence length)."""


class PlanConfig(StageConfig):
    """A capacity plan for a pre-training config under ZeRO-3."""

    stage: ClassVar[str] = "plan"
    renamed: ClassVar[dict[str, str]] = {
        "architecture.layers": "architecture (a preset name or a config.json path)",
        "cluster.nodes": "pretrain's ray.num_workers (GPUs) and cluster.gpus_per_node",
        "training": "pretrain (a pre-training config), corpus, mfu",
        "training.tokens": "corpus.tokens",
        "training.seq_len": "corpus.block_size",
        "training.micro_batch_size": "pretrain's train.per_device_train_batch_size",
        "training.grad_accum_steps": "pretrain's train.gradient_accumulation_steps",
        "training.activation_checkpointing": "pretrain's train.activation_checkpointing",
        "training.flash_attention": "pretrain's model.attn_implementation",
        "training.mfu": "mfu",
    }

    run_name: str = "qwen2_72b"
    pretrain: str = "jobs/configs/pretrain/qwen2_72b.yaml"
    """The pre-training config to plan (relative to the working directory)."""
    architecture: str = "qwen2_72b"
    """A preset (``qwen2_0_5b``, ``qwen2_1_5b``, ``qwen2_7b``, ``qwen2_72b``) or a ``config.json`` path."""
    cluster: ClusterSpec = ClusterSpec()
    corpus: CorpusSpec = CorpusSpec()
    mfu: float = Field(0.40, gt=0, le=1)
    """Model FLOPs utilisation assumed for the wall-clock estimate."""


@dataclass
class Plan:
    total_params: int
    largest_layer_params: int
    gpus: int
    params_bytes: float
    grads_bytes: float
    optimizer_bytes: float
    gathered_layer_bytes: float
    model_states_bytes: float
    activations_bytes: float
    logits_bytes: float
    reserve_bytes: float
    total_bytes: float
    gpu_bytes: float
    fits: bool
    flops_per_token: float
    total_flops: float
    tokens_per_step: int
    steps: int
    cluster_flops: float
    wall_clock_s: float
    arch: Architecture
    shape: RunShape


def architecture(name: str) -> Architecture:
    """A preset's or a ``config.json``'s decoder numbers."""
    from transformers import Qwen2Config

    path = resolve_path(f"{PRESETS}/{name}.json") if "/" not in name and not name.endswith(".json") else resolve_path(name)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ConfigError(f"architecture '{name}': no such preset or config.json (presets: qwen2_0_5b, qwen2_1_5b, qwen2_7b, qwen2_72b)")
    return Architecture.from_hf(Qwen2Config.from_json_file(str(path)))


@dataclass(frozen=True)
class RunShape:
    """What the plan takes from the pre-training config (and the corpus)."""

    gpus: int
    micro_batch_size: int
    grad_accum_steps: int
    seq_len: int
    tokens: float
    activation_checkpointing: bool
    flash_attention: bool
    """FlashAttention never materialises the attention matrix; ``eager`` attention stores scores and probabilities."""


def corpus_figures(cfg: PlanConfig, pretrain: PretrainConfig) -> tuple[float, int]:
    """``(training tokens of one epoch, block size)`` from the corpus manifest, else from ``corpus``."""
    manifest = resolve_path(pretrain.data.corpus) / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text(encoding="utf-8"))
        return float(m["splits"]["train"]["tokens"]), int(m["block_size"])
    return cfg.corpus.tokens, cfg.corpus.block_size


def run_shape(cfg: PlanConfig, pretrain: PretrainConfig) -> RunShape:
    """The pre-training run's shape; ConfigError for a DeepSpeed set-up the plan does not model."""
    ds, t = pretrain.deepspeed, pretrain.train
    if ds.zero_stage != 3 or ds.offload_optimizer or ds.offload_params:
        raise ConfigError(f"{cfg.pretrain}: the plan models ZeRO-3 without offload (deepspeed.zero_stage 3, no offload_*)")
    epoch_tokens, seq_len = corpus_figures(cfg, pretrain)
    gpus = pretrain.ray.num_workers
    per_step = t.per_device_train_batch_size * t.gradient_accumulation_steps * gpus * seq_len
    tokens = t.max_steps * per_step if t.max_steps else epoch_tokens * t.num_train_epochs
    return RunShape(gpus, t.per_device_train_batch_size, t.gradient_accumulation_steps, seq_len, tokens,
                    t.activation_checkpointing, pretrain.model.attn_implementation != "eager")  # fmt: skip


def model_state_bytes(total_params: int, largest_layer_params: int, gpus: int) -> dict[str, float]:
    """ZeRO-3 without offload, as DeepSpeed's estimator counts it (bf16 params, fp32 grads, AdamW fp32 states)."""
    return {
        "params_bytes": 2 * total_params / gpus,
        "grads_bytes": 4 * total_params / gpus,
        "optimizer_bytes": 12 * total_params / gpus,
        "gathered_layer_bytes": 4 * largest_layer_params,
    }


def layer_activation_bytes_per_token(arch: Architecture, seq_len: int, flash: bool) -> float:
    """bf16 tensors one decoder layer keeps for its backward pass, per token.

    Norm inputs (2h), q/k/v input (h), q, k, v (h + 2 kv), attention output (h), MLP input (h),
    gate, up, SiLU(gate) and the product (4 i): ``2 * (6h + 2kv + 4i)`` bytes; without FlashAttention
    add the scores and probabilities (2 bytes each per head and key), with it the fp32 log-sum-exp.
    """
    base = 2 * (6 * arch.hidden + 2 * arch.kv_dim + 4 * arch.intermediate)
    attention = 4 * arch.heads if flash else 4 * arch.heads * seq_len
    return base + attention


def activation_bytes(arch: Architecture, t: RunShape) -> float:
    tokens = t.micro_batch_size * t.seq_len
    per_layer = layer_activation_bytes_per_token(arch, t.seq_len, t.flash_attention) * tokens
    if t.activation_checkpointing:  # each layer's input is kept; one layer is recomputed at a time
        return arch.layers * 2 * arch.hidden * tokens + per_layer
    return arch.layers * per_layer


def logits_bytes(arch: Architecture, t: RunShape) -> float:
    """bf16 logits, their fp32 copy for the loss and its fp32 gradient."""
    return t.micro_batch_size * t.seq_len * arch.vocab * (2 + 4 + 4)


def make_plan(cfg: PlanConfig, pretrain: PretrainConfig | None = None) -> Plan:
    """The plan of ``pretrain`` (default: the config ``cfg.pretrain`` names) on ``cfg.architecture``."""
    pretrain = pretrain or load_config(PretrainConfig, cfg.pretrain)
    arch, c, t = architecture(cfg.architecture), cfg.cluster, run_shape(cfg, pretrain)
    gpus = t.gpus
    total, largest = arch.total_params(), arch.largest_module_params()
    states = model_state_bytes(total, largest, gpus)
    act, logits, reserve = activation_bytes(arch, t), logits_bytes(arch, t), c.runtime_reserve_gb * GiB
    model_states = sum(states.values())
    needed = model_states + act + logits + reserve
    peak = peak_flops(c.gpu, c.peak_flops)
    if peak is None:
        raise ValueError(f"cluster.gpu '{c.gpu}' has no known bf16 peak: set cluster.peak_flops")
    fpt = arch.train_flops_per_token(t.seq_len)
    tokens_per_step = t.micro_batch_size * t.grad_accum_steps * gpus * t.seq_len
    return Plan(
        total_params=total, largest_layer_params=largest, gpus=gpus, **states,
        model_states_bytes=model_states, activations_bytes=act, logits_bytes=logits, reserve_bytes=reserve,
        total_bytes=needed, gpu_bytes=c.gpu_memory_gb * GiB, fits=needed <= c.gpu_memory_gb * GiB,
        flops_per_token=fpt, total_flops=fpt * t.tokens, tokens_per_step=tokens_per_step,
        steps=int(-(-t.tokens // tokens_per_step)), cluster_flops=gpus * peak,
        wall_clock_s=fpt * t.tokens / (gpus * peak * cfg.mfu), arch=arch, shape=t,
    )


def render(cfg: PlanConfig, p: Plan) -> str:
    a, c, t = p.arch, cfg.cluster, p.shape
    gb = lambda b: f"{b / GiB:8.2f} GiB"  # noqa: E731
    lines = [
        f"# Pre-training plan: {cfg.run_name} ({cfg.pretrain} on {cfg.architecture})",
        "",
        f"model   {a.layers} layers, hidden {a.hidden}, intermediate {a.intermediate}, {a.heads} heads / {a.kv_heads} KV heads, "
        f"vocab {a.vocab}: {p.total_params / 1e9:.2f} B parameters (largest layer {p.largest_layer_params / 1e9:.3f} B)",
        f"cluster {p.gpus / c.gpus_per_node:g} nodes x {c.gpus_per_node} x {c.gpu} = {p.gpus} GPUs, {c.gpu_memory_gb:g} GB each",
        f"run     {t.tokens / 1e9:g} B tokens, seq {t.seq_len}, micro-batch {t.micro_batch_size}, accumulation {t.grad_accum_steps} "
        f"-> {p.tokens_per_step:,} tokens/step, {p.steps:,} steps; activation checkpointing "
        f"{'on' if t.activation_checkpointing else 'off'}, FlashAttention {'on' if t.flash_attention else 'off'}",
        "",
        "ZeRO-3 memory per GPU (bf16 weights, AdamW):",
        f"  parameters (bf16 shard)          {gb(p.params_bytes)}",
        f"  gradients (fp32 shard)           {gb(p.grads_bytes)}",
        f"  optimizer states (fp32 x3 shard) {gb(p.optimizer_bytes)}",
        f"  largest layer gathered           {gb(p.gathered_layer_bytes)}",
        f"  = model states                   {gb(p.model_states_bytes)}",
        f"  activations                      {gb(p.activations_bytes)}",
        f"  logits for the loss              {gb(p.logits_bytes)}",
        f"  runtime reserve                  {gb(p.reserve_bytes)}",
        f"  = total                          {gb(p.total_bytes)} of {gb(p.gpu_bytes)}: "
        + ("FITS" if p.fits else "DOES NOT FIT"),
        "",
        f"compute: {p.flops_per_token / 1e9:.1f} GFLOP/token x {t.tokens / 1e9:g} B tokens = {p.total_flops:.3e} FLOPs",
        f"wall clock at {cfg.mfu:.0%} MFU of {p.cluster_flops / 1e15:.1f} PFLOP/s peak: "
        f"{p.wall_clock_s / 3600:,.1f} h ({p.wall_clock_s / 86400:.1f} days)",
    ]
    return "\n".join(lines)


def run(cfg: PlanConfig) -> Plan:
    plan = make_plan(cfg)
    text = render(cfg, plan)
    print(text)
    out = cfg.run_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps({"config": cfg.model_dump(mode="json"), "plan": asdict(plan)}, indent=1), encoding="utf-8")
    (out / "plan.md").write_text(text + "\n", encoding="utf-8")
    return plan
