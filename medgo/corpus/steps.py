"""The per-batch bodies of the corpus build's Ray Data steps (Arrow table in, Arrow table out).

Every row of the corpus travels through all steps and keeps its ``doc`` position; a step that
drops a document sets ``reason`` (and ``detail``) and empties its text, so the final table
accounts for every input record: the statistics are a group-by over it.

Reasons: ``malformed`` (quarantined at read), ``too_short``, ``low_content``, ``repetitive``,
``exact_duplicate``, ``near_duplicate``, ``contaminated``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medgo.corpus.clean import line_hashes, normalise, quality_reason, remove_lines
from medgo.corpus.dedup import Signer, bucket_keys
from medgo.corpus.hashing import text_hash
from medgo.corpus.pack import backend_from_json, list_array, tokenize
from medgo.corpus.phi import PHI_TYPES, deidentify

REASONS = ("malformed", "too_short", "low_content", "repetitive", "exact_duplicate", "near_duplicate", "contaminated")
SPLITS = ("train", "validation")
SPLIT_BUCKETS = 1_000_000

_BASE = [("doc", pa.int64()), ("category", pa.string()), ("source", pa.string()), ("reason", pa.string()), ("detail", pa.string())]
NORMALISED_SCHEMA = pa.schema([*_BASE, ("markdown", pa.bool_()), ("text", pa.string())])
DOCS_SCHEMA = pa.schema([*_BASE, ("text", pa.string()), ("chars", pa.int64()), ("boilerplate_lines", pa.int32()), ("doc_hash", pa.int64()), ("signature", pa.binary())])
GROUPED_DOCS_SCHEMA = DOCS_SCHEMA.append(pa.field("group", pa.int32()))
DROPPED_SCHEMA = pa.schema([("doc", pa.int64()), ("kept", pa.int64()), ("reason", pa.string())])
TOKENS_SCHEMA = pa.schema(
    [*_BASE, ("split", pa.string()), ("chars", pa.int64()), ("boilerplate_lines", pa.int32()), ("tokens", pa.int64()), ("input_ids", pa.list_(pa.int32()))]
    + [(f"phi_{k}", pa.int32()) for k in PHI_TYPES]
)


def map_files_batch(batch: dict, fn, columns: list[str] | None, batch_rows: int, **kwargs):
    """Ray Data ``map_batches`` body over a dataset of Parquet paths: ``fn`` on every batch of
    ``batch_rows`` rows of each file, in the same task (one task per file, bounded memory)."""
    import pyarrow.parquet as pq

    for path in batch["path"]:
        for record_batch in pq.ParquetFile(str(path)).iter_batches(batch_size=batch_rows, columns=columns):
            out = fn(pa.Table.from_batches([record_batch]), **kwargs)
            if out.num_rows:
                yield out


def _columns(table: pa.Table, names) -> dict[str, list]:
    return {n: table.column(n).to_pylist() for n in names}


def normalise_batch(table: pa.Table, fullwidth_to_halfwidth: bool, strip_markup: bool) -> pa.Table:
    """Step 1b: Unicode, whitespace and markup normalisation; malformed rows keep reason ``malformed``."""
    c = _columns(table, ["doc", "category", "source", "markdown", "text", "reason"])
    texts, reasons, details = [], [], []
    for text, md, why in zip(c["text"], c["markdown"], c["reason"]):
        if why is not None:
            texts.append(None), reasons.append("malformed"), details.append(why)
        else:
            texts.append(normalise(text, md, strip_markup, fullwidth_to_halfwidth)), reasons.append(None), details.append(None)
    return pa.Table.from_pydict({**c, "text": texts, "reason": reasons, "detail": details}, schema=NORMALISED_SCHEMA)


def line_rows_batch(table: pa.Table, min_chars: int) -> pa.Table:
    """Boilerplate scan: one (line hash, document hash) row per distinct long line of a document."""
    lines, docs = [], []
    for text in table.column("text").to_pylist():
        if text is None:
            continue
        h = line_hashes(text, min_chars)
        lines.extend(h)
        docs.extend([text_hash(text)] * len(h))
    return pa.table({"line": pa.array(lines, pa.int64()), "doc_hash": pa.array(docs, pa.int64())})


def group_of(docs, starts: np.ndarray) -> np.ndarray:
    """The packing group of each document (``starts``: first document of each group, sorted)."""
    return (np.searchsorted(starts, np.asarray(docs, dtype=np.int64), side="right") - 1).astype(np.int32)


def filter_sign_batch(table: pa.Table, boilerplate: np.ndarray, clean: dict, dedup: dict, group_starts: np.ndarray) -> pa.Table:
    """Steps 2-3a: remove boilerplate lines, apply quality filters, hash and sign what passes;
    tag each row with its packing group."""
    c = _columns(table, ["doc", "category", "source", "reason", "detail", "text"])
    signer = Signer(dedup["num_perm"], dedup["ngram"], dedup["seed"])
    out = {**c, "chars": [], "boilerplate_lines": [], "doc_hash": [], "signature": []}
    for i, text in enumerate(c["text"]):
        removed, doc_hash, signature = 0, None, None
        if text is not None:
            text, removed = remove_lines(text, boilerplate, clean["boilerplate_min_chars"])
            reason = quality_reason(text, clean["min_chars"], clean["min_content_share"], clean["max_repetition"])
            if reason:
                out["reason"][i], out["detail"][i], text = reason, None, None
            else:
                doc_hash, signature = text_hash(text), signer(text).tobytes()
        out["text"][i] = text
        out["chars"].append(len(text) if text else 0)
        out["boilerplate_lines"].append(removed)
        out["doc_hash"].append(doc_hash)
        out["signature"].append(signature)
    out["group"] = group_of(c["doc"], group_starts)
    return pa.Table.from_pydict(out, schema=GROUPED_DOCS_SCHEMA)


def _signatures(table: pa.Table, num_perm: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(docs, doc hashes, signatures) of the rows still in the corpus."""
    keep = table.filter(pc.is_null(table.column("reason")))
    docs = keep.column("doc").to_numpy()
    hashes = keep.column("doc_hash").to_numpy()
    sigs = np.frombuffer(b"".join(keep.column("signature").to_pylist()), dtype=np.uint32).reshape(len(docs), num_perm)
    return docs, hashes, sigs


def bucket_rows_batch(table: pa.Table, dedup: dict, bands: int, rows: int) -> pa.Table:
    """Step 3b: one row per (document, LSH band) bucket key, plus one for the exact hash."""
    docs, hashes, sigs = _signatures(table, dedup["num_perm"])
    keys, _ = bucket_keys(sigs, hashes, bands, rows, dedup["near"], dedup["exact"])
    return pa.table({"key": pa.array(keys.ravel(), pa.int64())})


def candidate_rows_batch(table: pa.Table, dedup: dict, bands: int, rows: int, shared_keys: np.ndarray) -> pa.Table:
    """Step 3c: one row per (shared bucket, document in it), with the document's signature."""
    docs, hashes, sigs = _signatures(table, dedup["num_perm"])
    keys, _ = bucket_keys(sigs, hashes, bands, rows, dedup["near"], dedup["exact"])
    row, col = np.nonzero(np.isin(keys, shared_keys))
    return pa.table(
        {
            "key": pa.array(keys[row, col], pa.int64()),
            "doc": pa.array(docs[row], pa.int64()),
            "doc_hash": pa.array(hashes[row], pa.int64()),
            "signature": pa.array([sigs[i].tobytes() for i in row], pa.binary()),
        }
    )


def split_of(doc_hash: int, validation_fraction: float) -> str:
    """``validation`` for a deterministic share of documents (by their text hash), else ``train``."""
    return "validation" if (doc_hash % SPLIT_BUCKETS) < validation_fraction * SPLIT_BUCKETS else "train"


def final_batch(table: pa.Table, dropped: dict, phi_types: list[str] | None, index, tokenizer_json: str, eos: int, validation_fraction: float) -> pa.Table:
    """Steps 3d-6: drop duplicates, de-identify, decontaminate, split, tokenize."""
    c = _columns(table, ["doc", "category", "source", "reason", "detail", "text", "chars", "boilerplate_lines", "doc_hash"])
    tok = backend_from_json(tokenizer_json)
    n = len(c["doc"])
    phi = {k: [0] * n for k in PHI_TYPES}
    splits, keep_rows, keep_texts = [None] * n, [], []
    drop_pos = np.searchsorted(dropped["docs"], np.asarray(c["doc"], dtype=np.int64)) if n else np.empty(0, int)
    for i, text in enumerate(c["text"]):
        if text is None:
            continue
        j = drop_pos[i]
        if j < len(dropped["docs"]) and dropped["docs"][j] == c["doc"][i]:
            c["reason"][i], c["detail"][i] = dropped["reasons"][j], json.dumps({"kept": int(dropped["kept"][j])})
            continue
        if phi_types is None or phi_types:
            text, counts = deidentify(text, phi_types)
            for k, v in counts.items():
                phi[k][i] = v
        match = index.first_match(text, normalised=True) if index is not None else None
        if match is not None:
            item, ngram = match
            file, number = index.items[item]
            c["reason"][i], c["detail"][i] = "contaminated", json.dumps({"eval_file": file, "item": number, "ngram": ngram}, ensure_ascii=False)
            continue
        splits[i] = split_of(c["doc_hash"][i], validation_fraction)
        keep_rows.append(i)
        keep_texts.append(text)
    ids = [np.empty(0, np.int32)] * n
    for i, arr in zip(keep_rows, tokenize(keep_texts, tok, eos)):
        ids[i] = arr
    out = {k: c[k] for k in ("doc", "category", "source", "reason", "detail", "chars", "boilerplate_lines")}
    out.update(split=splits, tokens=[len(a) for a in ids], input_ids=list_array(ids), **{f"phi_{k}": v for k, v in phi.items()})
    return pa.Table.from_pydict(out, schema=TOKENS_SCHEMA)


def stats_batch(table: pa.Table) -> pa.Table:
    """Partial statistics of a batch: per (category, source, reason, split) sums."""
    keys = ["category", "source", "reason", "split"]
    sums = ["chars", "boilerplate_lines", "tokens"] + [f"phi_{k}" for k in PHI_TYPES]
    t = table.select(keys + sums).append_column("docs", pa.array(np.ones(table.num_rows, np.int64)))
    grouped = t.group_by(keys, use_threads=False).aggregate([(c, "sum") for c in ["docs", *sums]])
    return grouped.rename_columns([n.removesuffix("_sum") for n in grouped.column_names])


class Summary:
    """Statistics and the (small) lists of quarantined and contaminated documents, per batch."""

    def __init__(self):
        self.partials: list[pa.Table] = []
        self.quarantined: list[dict] = []
        self.contaminated: list[dict] = []

    def add(self, batch: pa.Table) -> None:
        self.partials.append(stats_batch(batch))
        for reason, rows in (("malformed", self.quarantined), ("contaminated", self.contaminated)):
            hit = batch.filter(pc.equal(batch["reason"], reason))
            if hit.num_rows:
                rows.extend(hit.select(["doc", "category", "source", "detail"]).to_pylist())

    def stats(self) -> pa.Table:
        """The partial statistics summed per (category, source, reason, split)."""
        if not self.partials:  # nothing was read
            return pa.table({"category": pa.array([], pa.string())})
        return sum_stats(pa.concat_tables(self.partials))


def sum_stats(partial: pa.Table) -> pa.Table:
    keys = ["category", "source", "reason", "split"]
    sums = [c for c in partial.column_names if c not in keys]
    grouped = partial.group_by(keys, use_threads=False).aggregate([(c, "sum") for c in sums])
    return grouped.rename_columns([n.removesuffix("_sum") for n in grouped.column_names])


def _pack_batch(batch: pa.Table, writers: dict, summary: Summary) -> None:
    summary.add(batch)
    ids = batch.column("input_ids").combine_chunks()
    offsets, values = ids.offsets.to_numpy(), ids.values.to_numpy()
    for i, split in enumerate(batch.column("split").to_pylist()):
        if split is not None:
            writers[split].add(values[offsets[i] : offsets[i + 1]])


def read_group(path: str, schema: pa.Schema) -> pa.Table:
    """Every row of one packing group's directory (``<step>/group=<g>``), in corpus order."""
    import pyarrow.parquet as pq

    return pq.read_table(path, schema=schema, partitioning=None).sort_by("doc")


def dropped_of(path: str | None) -> dict:
    """The documents deduplication drops from one group, as sorted arrays ``final_batch`` searches."""
    table = read_group(path, DROPPED_SCHEMA) if path else DROPPED_SCHEMA.empty_table()
    return {"docs": table.column("doc").to_numpy(), "reasons": table.column("reason").to_pylist(), "kept": table.column("kept").to_numpy()}


def pack_group_batch(batch: dict, shards_dir: str, dropped_dir: str, block_size: int, blocks_per_shard: int, batch_rows: int, **final) -> Iterator[pa.Table]:
    """Ray Data ``map_batches`` body over packing-group directories: drop duplicates, de-identify,
    decontaminate and tokenize the group's documents in corpus order, pack each split's stream
    into blocks and write the group's shards.  Yields one summary row per group."""
    from pathlib import Path

    from medgo.corpus.pack import ShardWriter

    for path in batch["path"]:
        group = int(Path(str(path)).name.split("=")[1])
        drops = Path(dropped_dir) / f"group={group}"
        dropped = dropped_of(str(drops) if drops.is_dir() else None)
        writers = {s: ShardWriter(Path(shards_dir) / s, block_size, blocks_per_shard, prefix=f"part-{group:05d}") for s in SPLITS}
        summary = Summary()
        for record_batch in read_group(str(path), DOCS_SCHEMA).to_batches(max_chunksize=batch_rows):
            _pack_batch(final_batch(pa.Table.from_batches([record_batch]), dropped, **final), writers, summary)
        yield group_summary(group, writers, summary, Path(shards_dir).parent)


def group_summary(group: int, writers: dict, summary: Summary, root) -> pa.Table:
    """One group's outcome for the driver: shards (path, blocks, tokens, SHA-256), statistics as
    Arrow IPC bytes, and the quarantined and contaminated documents as JSON."""
    for w in writers.values():
        w.close()
    shards = {s: [[p.relative_to(root).as_posix(), d] for p, d in zip(w.shards, w.digests())] for s, w in writers.items()}
    counts = {s: [w.blocks, w.tokens] for s, w in writers.items()}
    sink = pa.BufferOutputStream()
    stats = summary.stats()
    with pa.ipc.new_stream(sink, stats.schema) as ipc:
        ipc.write_table(stats)
    lists = {"quarantined": summary.quarantined, "contaminated": summary.contaminated}
    return pa.table(
        {
            "group": pa.array([group], pa.int32()),
            "shards": [json.dumps({"shards": shards, "counts": counts})],
            "stats": pa.array([sink.getvalue().to_pybytes()], pa.binary()),
            "lists": [json.dumps(lists, ensure_ascii=False)],
        }
    )
