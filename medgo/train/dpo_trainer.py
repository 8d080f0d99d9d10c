"""The DPO stage's trainer: ``trl.DPOTrainer`` with a leaner reference pass for ``train.precompute_ref_log_probs``.

With the reference cached, TRL computes the reference log-probabilities once, batch by batch, through the
model's fused LM head, which on a device without Triton projects *every* position (prompt and padding
included) onto the vocabulary and folds in the per-token statistics the training metrics need (entropy,
mean logit, top-1).  The reference needs none of that: :meth:`DPOTrainer.compute_ref_log_probs` runs
the backbone once, then projects only the completion's positions and computes only their
log-probabilities — the same numbers (same kernel, same reference policy), a fraction of the work, since
the vocabulary projection dominates a small model's cost and a prompt is often longer than its answer.
Anything it does not cover (vision inputs, prompt-learning adapters, ``ld_alpha``, scaled or soft-capped
logits) falls back to TRL's pass.
"""

from __future__ import annotations

import contextlib

import torch
import trl
from peft import PeftModel
from trl.kernels import ChunkedLogProbFunction
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import maybe_gather_lm_head_ctx, use_adapter

VOCAB_TILE = 32768
"""Vocabulary columns per tile of the chunked log-probability kernel (TRL's own tile width)."""
MODEL_INPUTS = {"input_ids", "attention_mask"}
"""The batch keys the lean pass feeds the model; a batch with any other model input goes through TRL's pass."""
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")
"""Model config keys that change the logits after the head (TRL's fused head applies them; the lean pass leaves those models to it)."""


class DPOTrainer(trl.DPOTrainer):
    """``trl.DPOTrainer`` whose precomputed reference scores only the completion tokens."""

    def compute_ref_log_probs(self, model, inputs):
        """``(chosen, rejected)`` summed reference log-probabilities of the completion tokens of one padded batch."""
        extra = set(inputs) - MODEL_INPUTS - {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}
        policy = self.accelerator.unwrap_model(self.model)
        text_config = policy.config.get_text_config()
        transformed = any(getattr(text_config, key, None) is not None for key in LOGIT_TRANSFORMS)
        if extra or transformed or self.ld_alpha is not None or (isinstance(policy, PeftModel) and policy.active_peft_config.is_prompt_learning):
            return super().compute_ref_log_probs(model, inputs)
        net = self.accelerator.unwrap_model(model)  # the ZeRO-3 inference engine's module, or the model itself
        causal_lm = net.get_base_model() if isinstance(net, PeftModel) else net
        adapter = contextlib.nullcontext()
        if self.ref_model is None and isinstance(policy, PeftModel):  # the reference: adapter off, or the frozen copy "ref"
            adapter = use_adapter(policy, adapter_name="ref" if "ref" in policy.peft_config else None)
        scored = inputs["completion_mask"][:, 1:].bool()  # position t predicts token t + 1
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs), adapter, self.accelerator.autocast():
            hidden = causal_lm.base_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False).last_hidden_state
            head = causal_lm.get_output_embeddings()
            with maybe_gather_lm_head_ctx(head.weight, head.bias):
                logps = ChunkedLogProbFunction.apply(hidden[:, :-1][scored], head.weight, head.bias, inputs["input_ids"][:, 1:][scored],
                                                     1.0, VOCAB_TILE, None, 1.0, ())[0]  # fmt: skip
        per_sequence = torch.zeros(scored.shape, dtype=logps.dtype, device=logps.device).masked_scatter(scored, logps).sum(dim=1)
        return per_sequence.chunk(2, dim=0)
