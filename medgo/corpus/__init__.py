"""The corpus stage: ingest, clean, deduplicate, de-identify, decontaminate, tokenize and pack.

    medgo corpus build --config jobs/configs/corpus/tiny.yaml --output runs/corpus/tiny

Modules: ``config`` (typed config), ``sources`` (read units, probes, reading, quarantine),
``encodings`` (``auto`` and configured decoding), ``pdf`` (PDF text without running headers),
``documents`` (Word, HTML, CSV/XLSX), ``samples`` and ``sample_texts`` (the embedded format
samples and their writers), ``clean`` (normalisation,
boilerplate, quality filters), ``dedup`` (MinHash LSH), ``phi`` (de-identification),
``decontam`` (eval n-gram overlap), ``pack`` (tokenize, pack, shard writer), ``steps`` (Ray
Data batch bodies), ``build`` (the pipeline), ``report`` (manifest, Markdown, chart),
``dataset`` (opening shards for training), ``phi_testset`` (generated PHI test set).
"""

from medgo.corpus.config import CorpusConfig

__all__ = ["CorpusConfig", "run"]


def run(cfg: CorpusConfig) -> dict:
    """Build the corpus (see :func:`medgo.corpus.build.run`)."""
    from medgo.corpus.build import run as _run

    return _run(cfg)
