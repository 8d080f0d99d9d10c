"""The corpus manifest (``manifest.json``) and the Markdown report with its chart.

The manifest holds only what the inputs and config determine (no times, no paths outside the
corpus), so two builds of the same inputs write the same manifest; timings go to
``metrics.json`` and the report.  No document text and no identifier value appears in either:
PHI is reported as counts per type, dropped documents by file and line.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from medgo.corpus import steps  # noqa: E402
from medgo.corpus.dedup import Clusters, lsh_params  # noqa: E402

if TYPE_CHECKING:
    from medgo.corpus.build import Plan

FORMAT = "medgo-corpus/1"
CHART = "tokens_per_category.png"


def _by(stats_rows: list[dict], key: str) -> dict:
    """Documents in/out, tokens, characters, drops by reason and PHI replaced, per value of ``key``."""
    out: dict = defaultdict(lambda: {"documents_in": 0, "documents_out": 0, "tokens": 0, "characters": 0, "dropped": defaultdict(int), "phi": defaultdict(int)})
    for r in stats_rows:
        e = out[r[key]]
        e["documents_in"] += r["docs"]
        for k in steps.PHI_TYPES:
            e["phi"][k] += r[f"phi_{k}"]
        if r["reason"] is None:
            e["documents_out"] += r["docs"]
            e["tokens"] += r["tokens"]
            e["characters"] += r["chars"]
        else:
            e["dropped"][r["reason"]] += r["docs"]
    return {k: {**v, "dropped": dict(sorted(v["dropped"].items())), "phi": {t: n for t, n in v["phi"].items() if n}} for k, v in sorted(out.items())}


def content_hash(shards: list[str], digests: list[str]) -> str:
    """SHA-256 over every shard's path and SHA-256 (computed by the worker that wrote it)."""
    h = hashlib.sha256()
    for path, digest in zip(shards, digests):
        h.update(f"{path} {digest}\n".encode())
    return h.hexdigest()


def build_manifest(plan: Plan, stats, clusters: Clusters, boilerplate, packed: dict, files: list[dict], n_quarantined: int, n_contaminated: int, read_groups: int) -> dict:
    cfg = plan.cfg
    formats = {s.name: s.format for s in cfg.sources}
    rows = [{**r, "format": formats[r["source"]]} for r in stats.to_pylist()]
    drops: dict = defaultdict(int)
    for r in rows:
        if r["reason"] is not None:
            drops[r["reason"]] += r["docs"]
    split_docs = defaultdict(int)
    for r in rows:
        if r["reason"] is None:
            split_docs[r["split"]] += r["docs"]
    bands, band_rows = lsh_params(cfg.dedup)
    return {
        "format": FORMAT,
        "tokenizer": cfg.tokenizer,
        "tokenizer_fingerprint": plan.fingerprint,
        "eos_token_id": plan.eos,
        "block_size": cfg.block_size,
        "validation_fraction": cfg.validation_fraction,
        "splits": {
            s: {
                "shards": packed[s]["shards"],
                "blocks": packed[s]["blocks"],
                "tokens": packed[s]["tokens"],
                "documents": split_docs.get(s, 0),
            }
            for s in steps.SPLITS
        },
        "content_hash": content_hash(*([x for s in steps.SPLITS for x in packed[s][k]] for k in ("shards", "digests"))),
        "documents": {"in": sum(r["docs"] for r in rows), "out": sum(split_docs.values()), "quarantined": n_quarantined},
        "read_groups": read_groups,
        "drops": {reason: drops.get(reason, 0) for reason in steps.REASONS},
        "categories": _by(rows, "category"),
        "sources": _by(rows, "source"),
        "formats": _by(rows, "format"),
        "boilerplate": {"lines": int(len(boilerplate)), "lines_removed": sum(r["boilerplate_lines"] for r in rows)},
        "duplicates": {
            "clusters": len(clusters.clusters),
            "documents_dropped": len(clusters.dropped),
            "largest_cluster": max((1 + len(d) for _, d in clusters.clusters), default=0),
            "candidate_pairs": clusters.candidate_pairs,
            "verified_pairs": clusters.verified_pairs,
            "lsh": {"threshold": cfg.dedup.threshold, "num_perm": cfg.dedup.num_perm, "ngram": cfg.dedup.ngram, "bands": bands, "rows": band_rows},
        },
        "phi": {k: sum(r[f"phi_{k}"] for r in rows) for k in steps.PHI_TYPES},
        "decontamination": {
            "ngram": cfg.decontam.ngram,
            "eval_items": len(plan.index.items) if plan.index else 0,
            "eval_items_too_short": plan.index.skipped_short if plan.index else 0,
            "eval_files": sorted({f for f, _ in plan.index.items}) if plan.index else [],
            "documents_dropped": n_contaminated,
        },
        "files": files,
    }


def chart(manifest: dict, path: Path) -> None:
    cats = manifest["categories"]
    names = list(cats)
    tokens = [cats[n]["tokens"] for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1.2))
    ax.barh(names, tokens, color="#3b7dd8")
    ax.invert_yaxis()
    ax.set_xlabel("tokens in the packed corpus")
    ax.margins(x=0.15)
    ax.set_title(f"Tokens per category ({sum(tokens):,} total)")
    for y, t in enumerate(tokens):
        ax.text(t, y, f" {t:,}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def write_report(out_dir: Path, manifest: dict, timings: dict) -> None:
    """``report.md`` plus the tokens-per-category chart."""
    chart(manifest, out_dir / CHART)
    m = manifest
    reasons = [r for r in steps.REASONS if m["drops"][r]]
    lines = [
        "# Corpus build report",
        "",
        f"Documents in: {m['documents']['in']:,}; out: {m['documents']['out']:,}; quarantined (malformed): {m['documents']['quarantined']:,}.",
        f"Tokenizer `{m['tokenizer']}` (fingerprint `{m['tokenizer_fingerprint']}`), block size {m['block_size']}.",
        "",
        f"![tokens per category]({CHART})",
        "",
        "## Per category",
        "",
        *_table(
            ["category", "docs in", "docs out", "tokens", *reasons],
            [[c, v["documents_in"], v["documents_out"], f"{v['tokens']:,}", *[v["dropped"].get(r, 0) for r in reasons]] for c, v in m["categories"].items()],
        ),
        "",
        "## Per format",
        "",
        *_table(
            ["format", "docs in", "docs out", "tokens", "quarantined", "PHI replaced"],
            [[f, v["documents_in"], v["documents_out"], f"{v['tokens']:,}", v["dropped"].get("malformed", 0), sum(v["phi"].values())] for f, v in m["formats"].items()],
        ),
        "",
        "## Splits",
        "",
        *_table(["split", "documents", "tokens", "blocks", "shards"], [[s, v["documents"], f"{v['tokens']:,}", v["blocks"], len(v["shards"])] for s, v in m["splits"].items()]),
        "",
        f"Content hash: `{m['content_hash']}`",
        "",
        "## Cleaning and deduplication",
        "",
        f"- Boilerplate: {m['boilerplate']['lines']} repeated lines found, {m['boilerplate']['lines_removed']} occurrences removed.",
        f"- Duplicates: {m['duplicates']['clusters']} clusters, {m['duplicates']['documents_dropped']} documents dropped "
        f"(exact {m['drops']['exact_duplicate']}, near {m['drops']['near_duplicate']}); largest cluster {m['duplicates']['largest_cluster']}; "
        f"{m['duplicates']['verified_pairs']} of {m['duplicates']['candidate_pairs']} LSH candidate pairs verified "
        f"(Jaccard >= {m['duplicates']['lsh']['threshold']}, {m['duplicates']['lsh']['bands']} bands x {m['duplicates']['lsh']['rows']} rows). "
        "Clusters are listed in `duplicates.jsonl`.",
        "",
        "## De-identification (counts only)",
        "",
        *_table(["identifier type", "replaced"], [[k, v] for k, v in m["phi"].items()]),
        "",
        "## Decontamination",
        "",
        f"{m['decontamination']['documents_dropped']} documents dropped for sharing a {m['decontamination']['ngram']}-character n-gram with one of "
        f"{m['decontamination']['eval_items']} evaluation items from {len(m['decontamination']['eval_files'])} files; "
        "each is listed in `decontaminated.jsonl` with the evaluation file, item and shared n-gram.",
        "",
        "## Time",
        "",
        *_table(["step", "seconds"], [[k, v] for k, v in timings.items()]),
        "",
    ]
    (out_dir / "report.md").write_text("\n".join(lines), encoding="utf-8")
