"""Attention for packed, padding-free SFT batches without FlashAttention: SDPA one conversation at a time.

TRL's ``bfd`` packing flattens a batch into one row of several conversations, each with its own
``position_ids`` (and the boundaries as ``cu_seq_lens_q``).  FlashAttention-2 runs its variable-length
kernel on them; with SDPA (the CPU, or a GPU without flash-attn) transformers instead builds a dense
block-diagonal mask over the whole row and attends every token to every token of the row, so a row of
n tokens in k conversations costs n² where k·(n/k)² would do, and the mask itself is n².

``sdpa_packed`` (registered with transformers' ``AttentionInterface`` on import) runs causal SDPA on each
conversation's slice of the row instead, and asks for no mask (transformers hands a custom implementation
the plain 2-D mask).  Batches that are not one packed row get SDPA with a causal mask, restricted to each
row's conversations when ``position_ids`` restart inside it, and to the 2-D attention mask's tokens.
The numbers are SDPA's on the same tokens; only the work it skips differs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import repeat_kv

NAME = "sdpa_packed"


def segments(position_ids: torch.Tensor) -> torch.Tensor:
    """Conversation index of every token, ``[batch, n]``: a new one wherever the positions do not go up by one."""
    return (torch.diff(position_ids, prepend=position_ids[:, :1], dim=-1) != 1).cumsum(-1)  # the first token starts one


def bounds(kwargs: dict) -> list[int] | None:
    """Start of each conversation of a one-row batch, then its length (None: no packing information)."""
    if kwargs.get("cu_seq_lens_q") is not None:
        return kwargs["cu_seq_lens_q"].tolist()
    position_ids = kwargs.get("position_ids")
    if position_ids is None:
        return None
    starts = (torch.diff(position_ids[0], prepend=position_ids[0, :1]) != 1).nonzero().flatten().tolist()
    return [*starts, position_ids.shape[-1]]


def sdpa_packed(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None, is_causal=None, **kwargs):
    """An ``AttentionInterface`` function: ``query [b, heads, q, d]``, ``key``/``value [b, kv_heads, k, d]`` -> ``[b, q, heads, d]``."""
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    q, k = query.shape[2], key.shape[2]
    cuts = bounds(kwargs) if query.shape[0] == 1 and attention_mask is None and q == k else None
    if cuts is not None:
        out = torch.cat([F.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], dropout_p=dropout, scale=scaling, is_causal=True)
                         for a, b in zip(cuts, cuts[1:]) if b > a], dim=2)  # fmt: skip
    else:
        mask = torch.ones(q, k, dtype=torch.bool, device=query.device).tril(k - q)[None, None]
        if kwargs.get("position_ids") is not None and q == k:
            seg = segments(kwargs["position_ids"].expand(query.shape[0], -1))
            mask = mask & (seg[:, :, None] == seg[:, None, :])[:, None]
        if attention_mask is not None:
            mask = mask & attention_mask[:, None, None, -k:].bool()
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, sdpa_packed)


def use_packed_attention(model: PreTrainedModel) -> PreTrainedModel:
    """Switch a model on SDPA with only full-attention layers to ``sdpa_packed``; any other model is left as it is."""
    config = model.config.get_text_config()
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    if model.config._attn_implementation == "sdpa" and layer_types == {"full_attention"}:
        model.set_attn_implementation(NAME)
    return model
