"""The feedback flywheel: doctors' judgements -> candidate adapter -> gate -> canary -> promote or roll back.

    medgo flywheel round --config jobs/configs/flywheel/tiny.yaml
    medgo flywheel demo --config jobs/configs/flywheel/tiny.yaml

Modules: ``registry`` (the model versions table beside the feedback store), ``routing``
(sticky per-conversation canary routing and the live versions pushed to the model replicas),
``adapters`` (loading and retiring adapters in a running model replica), ``stats``
(acceptance per version, its interval, the auto-rollback test, the Ray metric), ``control``
(publish, promote, rollback, check), ``cli`` (``medgo flywheel ...``); ``round`` (one round:
judgements, hold-back, training, the gate, registration), ``judgements``, ``gate``, ``safety``
(the harmful-request refusal check) and ``demo``.  See docs/flywheel.md.
"""
