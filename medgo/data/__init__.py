"""Shared formats that producers and consumers both import, below every stage.

``paths``     one spelling for embedded assets: ``medgo://assets/...`` resolves inside the installed package
``feedback``  the doctors' feedback record: written by ``medgo serve export``, read by the DPO preference builder
``files``       JSON, JSONL and TSV task files read with errors that name the file and line
``cblue_gold``  each CBLUE task's label set and native gold file reader
``cblue``       CBLUE examples (native file -> one example per prompt), used by SFT data and evaluation
``answers``     each task's answer format: gold item -> the reply its evaluation parser reads back
``prompts``     the prompt templates of every CBLUE task and ClinicalQA, used by SFT data and evaluation

Nothing here imports a stage (corpus, train, eval, serve); ``tests/test_imports.py`` checks it.
"""
