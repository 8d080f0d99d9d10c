"""Parameter counts, training FLOPs per token and peak device FLOP/s for decoder-only models.

FLOPs per token follow the PaLM appendix B convention: ``6 * N`` for the weight matmuls (forward
and backward; N counts every matrix a token passes through, the output projection included and
the input embedding lookup excluded) plus ``12 * layers * hidden * seq`` for attention scores and
values.  Activation recomputation is not counted: MFU measures model FLOPs, not hardware FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

# Dense bf16 tensor-core peak per device, FLOP/s (vendor data sheets, SXM parts unless named).
PEAK_BF16_FLOPS = {
    "H100 PCIe": 756e12,
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
}


@dataclass(frozen=True)
class Architecture:
    """The numbers of a Qwen2-style decoder that memory and FLOPs depend on."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tie_embeddings: bool = False
    qkv_bias: bool = True

    @classmethod
    def from_hf(cls, config) -> Architecture:
        return cls(
            layers=config.num_hidden_layers,
            hidden=config.hidden_size,
            intermediate=config.intermediate_size,
            heads=config.num_attention_heads,
            kv_heads=config.num_key_value_heads,
            vocab=config.vocab_size,
            tie_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        )

    @property
    def kv_dim(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    def layer_params(self) -> int:
        h, kv, i = self.hidden, self.kv_dim, self.intermediate
        attn = h * h + 2 * h * kv + h * h + ((h + 2 * kv) if self.qkv_bias else 0)
        return attn + 3 * h * i + 2 * h  # + two RMSNorm weights

    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    def total_params(self) -> int:
        head = 0 if self.tie_embeddings else self.embedding_params()
        return self.embedding_params() + head + self.layers * self.layer_params() + self.hidden

    def largest_module_params(self) -> int:
        """Parameters held directly by the largest single module (the embedding for Qwen2)."""
        h, i = self.hidden, self.intermediate
        return max(self.embedding_params(), h * i, h * h + (h if self.qkv_bias else 0))

    def matmul_params(self) -> int:
        """Weights a token is multiplied by: each layer's projections (not its norms) and the output head."""
        return self.layers * (self.layer_params() - 2 * self.hidden) + self.embedding_params()

    def train_flops_per_token(self, seq_len: int) -> float:
        return 6.0 * self.matmul_params() + 12.0 * self.layers * self.hidden * seq_len


def peak_flops(device_name: str | None, override: float | None = None) -> float | None:
    """Peak bf16 FLOP/s of one device: ``override`` when given, else looked up by name (None if unknown)."""
    if override:
        return override
    if not device_name:
        return None
    for key, value in PEAK_BF16_FLOPS.items():
        if key in device_name:
            return value
    return None
