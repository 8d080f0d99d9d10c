"""Training on Ray Train + DeepSpeed: one config vocabulary, one worker set-up, one train function per stage.

``config``            the shared sections and keys (Hugging Face ``TrainingArguments`` names): train, deepspeed, ray, metrics, debug, lora
``<stage>_config``    a stage's config: the shared sections plus its data and extras (pretrain, sft, dpo)
``<stage>``           the stage's ``run(cfg)`` (driver) and ``train_loop`` (worker)
``launcher``          Ray Train's configs from the ``ray`` section, ``fit``, the DeepSpeed engine, collectives
``worker``            the set-up every ``train_loop`` starts with
``deepspeed_config``  the one DeepSpeed config builder
``faults``            the one fault drill (``debug.fail_at_step``, ``debug.stop_at_step``)
``trl_stage``         what the TRL stages share: arguments passed through to TRL, steps, resume, the adapter
``callbacks``         the trainer callbacks of the TRL stages: metrics, checkpoints to Ray Train, the drill
``base_model``        the base a TRL stage trains on, written where every worker can load it; merging
``checkpoint``        DeepSpeed checkpoints from all ranks via ``ray.train.report``; restore; HF export
``data``              packed corpus shards, resumable per-worker block stream
``metrics``           metrics.jsonl, TensorBoard, Ray gauges, loss-curve PNG
``flops``             parameter counts, FLOPs per token, peak FLOP/s (MFU and ``medgo plan``)
``sft_data``          SFT sources (messages, QA, diagnosis, instructions, Safety-Prompts, CBLUE) -> chat messages
``preference``        doctors' judgements (``medgo serve export``) -> DPO preference pairs
"""
