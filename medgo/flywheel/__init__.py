"""The feedback flywheel: doctors' judgements -> candidate adapter -> gate -> registry -> canary -> promote.

    medgo flywheel round --config jobs/configs/flywheel/tiny.yaml
    medgo flywheel demo --config jobs/configs/flywheel/tiny.yaml
"""
