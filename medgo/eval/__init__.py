"""Evaluation: CBLUE tasks, ClinicalQA multiple choice and KUAKE-IR retrieval, with paper-style reports.

    medgo eval run --config jobs/configs/eval/tiny.yaml        # generate, parse, score, report
    medgo eval score --task CMeEE-V2 --gold dev.json --pred pred.json   # score existing predictions

The task readers, answer formats and prompt templates it shares with SFT live in
:mod:`medgo.data`; ``generation`` holds the batched
generation over Ray Data, ``clinicalqa`` and ``retrieval`` their task paths, ``report`` the
tables and chart, ``run`` the stage function; ``metrics`` the official scorers and parsers.
"""
