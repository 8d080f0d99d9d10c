"""MedGo on Ray: a Chinese medical LLM pipeline from corpus to serving.

Stages (each a ``run(config)`` function, reachable as ``medgo <stage>`` and
``jobs/<stage>.py``): corpus build, pre-training, evaluation, serving, and
``generate`` for a quick reply from any model directory.
"""

__version__ = "0.1.0"
