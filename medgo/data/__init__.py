"""Shared formats that producers and consumers both import, below every stage.

``paths``     one spelling for embedded assets: ``medgo://assets/...`` resolves inside the installed package
``feedback``  the doctors' feedback record: written by ``medgo serve export``, read by the DPO preference builder
``cblue``     CBLUE task readers (native files -> examples), used by SFT data and evaluation
``prompts``   the prompt templates of every CBLUE task and ClinicalQA, used by SFT data and evaluation
"""
