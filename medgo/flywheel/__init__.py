"""The feedback flywheel: doctors' judgements -> candidate adapter -> gate -> canary -> promote or roll back.

Modules: ``registry`` (the model versions table beside the feedback store), ``routing``
(sticky per-conversation canary routing and the live versions pushed to the model replicas),
``adapters`` (loading and retiring adapters in a running model replica), ``stats``
(acceptance per version, its interval, the auto-rollback test, the Ray metric), ``control``
(publish, promote, rollback, check), ``cli`` (``medgo flywheel ...``).  See docs/flywheel.md.
"""
