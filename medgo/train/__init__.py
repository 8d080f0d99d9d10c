"""Training on Ray Train + DeepSpeed: the shared launcher and one train function per stage.

``settings``          typed sections every stage composes (optimizer, batch, DeepSpeed, checkpoints, metrics)
``deepspeed_config``  the DeepSpeed config dict built from those settings
``launcher``          ``TorchTrainer`` set-up (gloo/nccl, workers, storage, failures) and the engine
``checkpoint``        DeepSpeed checkpoints from all ranks via ``ray.train.report``; restore; HF export
``data``              packed corpus shards, resumable per-worker block stream
``metrics``           metrics.jsonl, TensorBoard, Ray gauges, loss-curve PNG
``flops``             parameter counts, FLOPs per token, peak FLOP/s (MFU and ``medgo plan``)
``pretrain``          continued pre-training: ``medgo pretrain --config jobs/configs/pretrain/tiny.yaml``
"""
