"""The corpus build: sources -> clean -> deduplicate -> de-identify -> decontaminate -> packed shards.

    medgo corpus build --config jobs/configs/corpus/tiny.yaml --output runs/corpus/tiny

Every step is a Ray Data operation over a stream of Arrow batches; the driver only plans the
read units, holds small decision sets (boilerplate line hashes, the keys of shared LSH buckets,
the eval n-gram index), loops over the clustering rounds of deduplication and writes the
manifest.  Filtered documents are written partitioned by *packing group* (consecutive read units
of about ``read.group_mb``); one task per group then de-identifies, decontaminates, tokenizes and
packs the group's documents in corpus order into shards of its own, so nothing sequential is
left on the driver and no global sort is needed.
Intermediate Parquet files live under ``_work`` while the build runs.  Everything is checked
before any worker starts (sources, tokenizer, evaluation files, output directory); the new
corpus is assembled next to the output directory and moved into place only when complete, so a
failed build never leaves a half-written corpus.

On a multi-node cluster ``output_dir`` must be a filesystem every node can write (e.g. NFS).
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from ray.data.aggregate import Count, CountDistinct, Max, Sum

from medgo import console
from medgo.config import ConfigError, save_config
from medgo.corpus import steps
from medgo.corpus.config import CorpusConfig, resolve_path
from medgo.corpus.decontam import EvalIndex, build_index, missing_patterns
from medgo.corpus.dedup import Clusters, both_directions, clusters_of, dropped_rows, lsh_params, star_partition, verify_buckets, with_partition
from medgo.corpus.pack import eos_id, load_hf_tokenizer
from medgo.corpus.report import build_manifest, write_report
from medgo.corpus.sources import ReadUnit, doc_ref, file_table, group_starts, group_units, list_files, needs_probe, plan_units, probe, read_group_batch, resolve_units
from medgo.model.tokenizer import tokenizer_fingerprint
from medgo.ray_utils import init_ray


@dataclass
class Plan:
    """Everything the build needs, checked before any worker starts."""

    cfg: CorpusConfig
    files: list
    units: list[ReadUnit]
    tokenizer: str
    tokenizer_json: str
    fingerprint: str
    eos: int
    index: EvalIndex | None
    out: Path
    staging: Path
    timings: dict = field(default_factory=dict)
    file_info: dict = field(default_factory=dict)
    """Per file index, what the probes found (encoding, pages)."""

    @property
    def work(self) -> Path:
        return self.staging / "_work"


def tokenizer_ref(cfg: CorpusConfig) -> str:
    """``tiny`` or the resolved tokenizer directory (a ConfigError when it does not exist)."""
    if cfg.tokenizer in ("tiny", "embedded", ""):
        return "tiny"
    path = resolve_path(cfg.tokenizer)
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        raise ConfigError(f"key 'tokenizer': {cfg.tokenizer!r} is not a Hugging Face tokenizer directory")
    return str(path.resolve())


def check_output(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "manifest.json").is_file())):
        raise ConfigError(f"output_dir {out} exists and is not a corpus directory (no manifest.json); refusing to overwrite it")


def prepare(cfg: CorpusConfig) -> Plan:
    """Validate sources, tokenizer, evaluation files and output directory; plan the read units."""
    files = list_files(cfg)
    tokenizer = tokenizer_ref(cfg)
    tok = load_hf_tokenizer(tokenizer)
    index = None
    if cfg.decontam.enabled and cfg.decontam.eval_files:
        missing = missing_patterns(cfg.decontam.eval_files)
        if missing:
            raise ConfigError(f"key 'decontam.eval_files': no file matches {missing}")
        try:
            index = build_index(cfg.decontam.eval_files, cfg.decontam.ngram)
        except ValueError as exc:
            raise ConfigError(f"key 'decontam.eval_files': {exc}") from None
    out = cfg.run_dir()
    check_output(out)
    units = plan_units(cfg, files)
    staging = out.parent / f".{out.name}.building"
    return Plan(cfg, files, units, tokenizer, tok.backend_tokenizer.to_str(), tokenizer_fingerprint(tok), eos_id(tok), index, out, staging)


@contextmanager
def data_context(cfg: CorpusConfig):
    """The configured shuffle and block size, for this build only."""
    ctx = ray.data.DataContext.get_current()
    saved = ctx.shuffle_strategy, ctx.target_max_block_size
    ctx.shuffle_strategy = cfg.shuffle_strategy
    ctx.target_max_block_size = int(cfg.read.block_mb * 2**20)
    try:
        yield ctx
    finally:
        ctx.shuffle_strategy, ctx.target_max_block_size = saved


BUILD_STEPS = 5  # the timed steps of run(), for the progress bar


@contextmanager
def timed(plan: Plan, name: str):
    start = time.perf_counter()
    yield
    plan.timings[name] = round(time.perf_counter() - start, 3)
    print(f"medgo corpus: {name} done in {plan.timings[name]:.1f}s", flush=True)
    console.progress(len(plan.timings), BUILD_STEPS)


def _collect(ds: ray.data.Dataset) -> pa.Table | None:
    """Concatenate a (small) dataset into one Arrow table in the driver."""
    tables = [b for b in ds.iter_batches(batch_format="pyarrow", batch_size=None) if b.num_rows]
    return pa.concat_tables(tables) if tables else None


def _files(plan: Plan, name: str) -> list[str]:
    """The work files of one step, sorted (none when every source was empty)."""
    return sorted(str(p) for p in (plan.work / name).rglob("*.parquet"))


def _map(plan: Plan, name: str, fn, columns: list[str] | None = None, **kwargs) -> ray.data.Dataset:
    """A streaming step over the work files ``name``: one task per file, ``fn`` on Arrow batches of
    ``read.batch_rows`` rows.  Files come from one read group each, so the build keeps the
    parallelism (and the bounded memory) of its read groups."""
    files = _files(plan, name)
    ds = ray.data.from_items([{"path": f} for f in files], override_num_blocks=len(files))
    kwargs = {"fn": fn, "columns": columns, "batch_rows": plan.cfg.read.batch_rows, **kwargs}
    return ds.map_batches(steps.map_files_batch, batch_size=1, batch_format="numpy", fn_kwargs=kwargs)


def step_probe(plan: Plan) -> list[ReadUnit]:
    """Probe tasks (first lines of byte ranges, PDF page counts, encodings), then the final units."""
    pending = [asdict(u) for u in plan.units if needs_probe(u)]
    found = ray.data.from_items(pending, override_num_blocks=len(pending)).map(probe).take_all() if pending else []
    units, plan.file_info = resolve_units(plan.units, found, plan.cfg.read.pdf_pages)
    return units


def step_read_normalise(plan: Plan) -> np.ndarray:
    """Read every group of units, one task each (quarantining malformed records), and normalise
    the text; return the first document of each group."""
    units = step_probe(plan)
    clean = plan.cfg.clean
    groups = group_units(units, int(plan.cfg.read.group_mb * 2**20))
    items = [{"units": json.dumps([asdict(u) for u in g])} for g in groups]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    kwargs = {"batch_rows": plan.cfg.read.batch_rows, "transform": steps.normalise_batch, "fullwidth_to_halfwidth": clean.fullwidth_to_halfwidth, "strip_markup": clean.strip_markup}
    ds.map_batches(read_group_batch, batch_size=1, batch_format="numpy", fn_kwargs=kwargs).write_parquet(str(plan.work / "normalised"))
    return group_starts(groups)


def step_boilerplate(plan: Plan) -> np.ndarray:
    """Hashes of lines found in at least ``boilerplate_min_docs`` distinct documents (sorted)."""
    clean = plan.cfg.clean
    if clean.boilerplate_min_docs == 0 or not _files(plan, "normalised"):
        return np.empty(0, np.int64)
    k = clean.boilerplate_min_docs
    ds = _map(plan, "normalised", steps.line_rows_batch, ["text"], min_chars=clean.boilerplate_min_chars)
    ds = ds.groupby("line", num_partitions=plan.cfg.dedup.shuffle_partitions).aggregate(CountDistinct(on="doc_hash", alias_name="docs"))
    ds = ds.map_batches(lambda t: t.filter(pc.greater_equal(t["docs"], k)).select(["line"]), batch_format="pyarrow")
    table = _collect(ds)
    return np.sort(table.column("line").to_numpy()) if table is not None else np.empty(0, np.int64)


def step_filter_sign(plan: Plan, boilerplate: np.ndarray, starts: np.ndarray) -> None:
    """Remove boilerplate lines, apply the quality filters, hash and MinHash what passes; written
    partitioned by packing group."""
    cfg = plan.cfg
    if not _files(plan, "normalised"):
        return
    ds = _map(plan, "normalised", steps.filter_sign_batch, boilerplate=boilerplate, clean=cfg.clean.model_dump(), dedup=cfg.dedup.model_dump(), group_starts=starts)
    ds.write_parquet(str(plan.work / "docs"), partition_cols=["group"])


MAX_ROUNDS = 64
"""Connected-components rounds before giving up (each round at least halves a cluster's depth)."""


def _shared_keys(plan: Plan, kwargs: dict) -> np.ndarray:
    """Bucket keys held by two documents or more (counted over Ray)."""
    counts = _map(plan, "docs", steps.bucket_rows_batch, DEDUP_COLUMNS, **kwargs)
    counts = counts.groupby("key", num_partitions=plan.cfg.dedup.shuffle_partitions).count()
    shared = _collect(counts.map_batches(lambda t: t.filter(pc.greater_equal(t["count()"], 2)).select(["key"]), batch_format="pyarrow"))
    return np.unique(shared.column("key").to_numpy()) if shared is not None else np.empty(0, np.int64)


def _verified_pairs(plan: Plan, kwargs: dict, shared_keys: np.ndarray) -> ray.data.Dataset:
    """Distinct candidate pairs, verified in the task that holds their bucket (buckets are shuffled
    by a hash of their key into ``shuffle_partitions`` groups, each handled by one call)."""
    d = plan.cfg.dedup
    rows = _map(plan, "docs", steps.candidate_rows_batch, DEDUP_COLUMNS, **kwargs, shared_keys=shared_keys)
    rows = rows.map_batches(with_partition, batch_format="pyarrow", fn_kwargs={"column": "key", "partitions": d.shuffle_partitions})
    verify = {"threshold": d.threshold, "near": d.near}
    pairs = rows.groupby("part", num_partitions=d.shuffle_partitions).map_groups(verify_buckets, batch_format="pyarrow", fn_kwargs=verify)
    pairs = pairs.groupby(["a", "b"], num_partitions=d.shuffle_partitions).aggregate(Max("ha", alias_name="ha"), Max("hb", alias_name="hb"), Max("verified", alias_name="verified"))
    return pairs.materialize()


def _components(plan: Plan, edges: ray.data.Dataset) -> ray.data.Dataset:
    """Connected components of the verified pairs: hash-to-min rounds until every cluster is a
    star around its smallest document."""
    for _ in range(MAX_ROUNDS):
        parts = plan.cfg.dedup.shuffle_partitions
        rows = edges.map_batches(both_directions, batch_format="pyarrow").map_batches(with_partition, batch_format="pyarrow", fn_kwargs={"column": "node", "partitions": parts})
        edges = rows.groupby("part", num_partitions=parts).map_groups(star_partition, batch_format="pyarrow").materialize()
        if not edges.sum("unsettled"):
            return edges
    raise RuntimeError(f"duplicate clusters did not settle in {MAX_ROUNDS} rounds")


DEDUP_COLUMNS = ["doc", "reason", "doc_hash", "signature"]


def step_dedup(plan: Plan, starts: np.ndarray) -> Clusters:
    """Bucket counts, pair verification and clustering, all over Ray; the documents to drop are
    written partitioned by packing group, where the final step of each group reads them."""
    d = plan.cfg.dedup
    if not (d.exact or d.near) or not _files(plan, "docs"):
        return Clusters()
    bands, rows = lsh_params(d)
    kwargs = {"dedup": d.model_dump(), "bands": bands, "rows": rows}
    shared_keys = _shared_keys(plan, kwargs)
    if shared_keys.size == 0:
        return Clusters()
    pairs = _verified_pairs(plan, kwargs, shared_keys)
    counts = pairs.aggregate(Count(), Sum("verified"))
    n_pairs, n_verified = counts["count()"], counts["sum(verified)"] or 0
    if n_verified == 0:
        return Clusters(candidate_pairs=n_pairs)
    edges = pairs.map_batches(lambda t: t.filter(pc.equal(t["verified"], 1)), batch_format="pyarrow")
    dropped = _components(plan, edges).map_batches(dropped_rows, batch_format="pyarrow")
    dropped = dropped.map_batches(lambda t: t.append_column("group", pa.array(steps.group_of(t["doc"], starts))), batch_format="pyarrow")
    dropped.write_parquet(str(plan.work / "dropped"), partition_cols=["group"])
    listed = pq.read_table(plan.work / "dropped", schema=steps.DROPPED_SCHEMA)
    return clusters_of(listed, n_pairs, n_verified)


BLOCKS_PER_SHARD = 16384


def step_final_pack(plan: Plan) -> pa.Table | None:
    """Per packing group, in parallel: drop duplicates, de-identify, decontaminate, tokenize, pack
    and write the group's shards.  Returns one summary row per group."""
    cfg = plan.cfg
    groups = sorted(str(p) for p in (plan.work / "docs").glob("group=*"))
    if not groups:
        return None
    phi_types = cfg.phi.types if cfg.phi.enabled else []
    kwargs = {
        "shards_dir": str(plan.staging / "shards"), "dropped_dir": str(plan.work / "dropped"), "block_size": cfg.block_size, "blocks_per_shard": BLOCKS_PER_SHARD,
        "batch_rows": cfg.read.batch_rows, "phi_types": phi_types, "index": plan.index, "tokenizer_json": plan.tokenizer_json, "eos": plan.eos, "validation_fraction": cfg.validation_fraction,
    }
    ds = ray.data.from_items([{"path": g} for g in groups], override_num_blocks=len(groups))
    return _collect(ds.map_batches(steps.pack_group_batch, batch_size=1, batch_format="numpy", fn_kwargs=kwargs))


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def finalize(plan: Plan) -> None:
    """Move the finished corpus into place (replacing an earlier build) and drop the work files."""
    if not plan.cfg.keep_work:
        shutil.rmtree(plan.work, ignore_errors=True)
    if plan.out.exists():
        shutil.rmtree(plan.out)
    plan.staging.rename(plan.out)


def merge_groups(groups: pa.Table | None) -> tuple[dict, pa.Table, list[dict], list[dict]]:
    """The group summaries in corpus order: shards per split (paths, SHA-256, blocks, tokens),
    the statistics, and the quarantined and contaminated documents."""
    packed = {s: {"shards": [], "digests": [], "blocks": 0, "tokens": 0} for s in steps.SPLITS}
    summary = steps.Summary()
    if groups is None:
        return packed, summary.stats(), [], []
    for row in groups.sort_by("group").to_pylist():
        written = json.loads(row["shards"])
        for split, entry in packed.items():
            entry["shards"] += [path for path, _ in written["shards"][split]]
            entry["digests"] += [digest for _, digest in written["shards"][split]]
            entry["blocks"] += written["counts"][split][0]
            entry["tokens"] += written["counts"][split][1]
        summary.partials.append(pa.ipc.open_stream(row["stats"]).read_all())
        lists = json.loads(row["lists"])
        summary.quarantined += lists["quarantined"]
        summary.contaminated += lists["contaminated"]
    return packed, summary.stats(), summary.quarantined, summary.contaminated


def run(cfg: CorpusConfig) -> dict:
    """Build the corpus described by ``cfg``; returns the manifest."""

    plan = prepare(cfg)
    if plan.staging.exists():
        shutil.rmtree(plan.staging)
    plan.work.mkdir(parents=True)
    init_ray(cfg.ray.address)
    with data_context(cfg):
        with timed(plan, "read+normalise"):
            starts = step_read_normalise(plan)
        with timed(plan, "boilerplate"):
            boilerplate = step_boilerplate(plan)
        with timed(plan, "filter+minhash"):
            step_filter_sign(plan, boilerplate, starts)
        with timed(plan, "dedup"):
            clusters = step_dedup(plan, starts)
        with timed(plan, "deidentify+decontaminate+tokenize+pack"):
            packed, stats, quarantined, contaminated = merge_groups(step_final_pack(plan))
    files = file_table(plan.files, cfg, plan.file_info)

    def ref(doc: int) -> dict:
        return doc_ref(files, doc, cfg.read.pdf_pages)

    write_jsonl(plan.staging / "quarantine.jsonl", [{**ref(r["doc"]), "source": r["source"], "reason": r["detail"]} for r in quarantined])
    write_jsonl(plan.staging / "decontaminated.jsonl", [{**ref(r["doc"]), "category": r["category"], **json.loads(r["detail"])} for r in contaminated])
    write_jsonl(plan.staging / "duplicates.jsonl", [{"kept": ref(k), "dropped": [ref(d) for d in ds]} for k, ds in clusters.clusters])
    manifest = build_manifest(plan, stats, clusters, boilerplate, packed, files, len(quarantined), len(contaminated), len(starts))
    (plan.staging / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (plan.staging / "metrics.json").write_text(json.dumps({"seconds": plan.timings}, indent=2) + "\n", encoding="utf-8")
    save_config(cfg, plan.staging / "config.yaml")
    write_report(plan.staging, manifest, plan.timings)
    finalize(plan)
    console.summary(f"medgo corpus: wrote {plan.out} ({manifest['splits']['train']['tokens']} train / {manifest['splits']['validation']['tokens']} validation tokens)")
    return manifest
