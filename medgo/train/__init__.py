"""Training on Ray Train + DeepSpeed: the shared launcher and one train function per stage.

``settings``          typed sections every stage composes (optimizer, batch, DeepSpeed, checkpoints, metrics)
``deepspeed_config``  the DeepSpeed config dict built from those settings
``launcher``          ``TorchTrainer`` set-up (gloo/nccl, workers, storage, failures) and the engine
``checkpoint``        DeepSpeed checkpoints from all ranks via ``ray.train.report``; restore; HF export
``data``              packed corpus shards, resumable per-worker block stream
``metrics``           metrics.jsonl, TensorBoard, Ray gauges, loss-curve PNG
``flops``             parameter counts, FLOPs per token, peak FLOP/s (MFU and ``medgo plan``)
``pretrain``          continued pre-training: ``medgo pretrain --config jobs/configs/pretrain/tiny.yaml``
``finetune``          what the TRL stages share: LoRA, training arguments, DeepSpeed dict, Ray Train checkpoints, adapter
``sft_data``          SFT sources (messages, QA, diagnosis, instructions, Safety-Prompts, CBLUE) -> chat messages
``sft``               LoRA SFT with TRL's SFTTrainer: ``medgo sft --config jobs/configs/sft/tiny.yaml``
``preference``        doctors' judgements (``medgo serve export``) -> DPO preference pairs
``dpo``               DPO with LoRA from doctors' feedback: ``medgo dpo --config jobs/configs/dpo/tiny.yaml``
"""
