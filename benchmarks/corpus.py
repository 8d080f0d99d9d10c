"""Corpus build throughput and memory, side by side with raw tokenization, in one process.

    .venv/bin/python benchmarks/corpus.py            # 50 MB and 4x that (200 MB)
    .venv/bin/python benchmarks/corpus.py --mb 10    # a quicker look

A synthetic corpus is built from the sample corpus: documents of 8-40 sentences drawn at random
from one category's sentences (so they are not near-duplicates of each other), case reports
prefixed with generated identifiers, plus 1% exact duplicates, 1% near-duplicates and 0.1%
malformed lines.  Measured in the same run:

* raw: ``tokenizers`` batch encoding of every document text (the Rust tokenizer, all threads),
  before and after each build (the faster run counts, in case the machine is shared);
* end to end: ``medgo corpus build`` on the same files with every step on (read, clean,
  boilerplate, MinHash dedup, PHI, decontamination, tokenize, pack, write), at 1x and 4x;
* peak memory of this process and every Ray process it started (sum of PSS, sampled every
  0.25 s), at 1x and 4x the corpus size, total and above the idle Ray baseline;
* the PDF reader (pdfminer.six layout analysis plus header/footer removal, one process): pages
  and characters per second over the embedded sample PDFs, read repeatedly for ``--pdf-seconds``.

Prints the ratio at both sizes against the target (0.5) and writes
``benchmarks/results/corpus.json`` (``throughput_ratio``: the lower of the two), including the
time the measured rate projects for 14B tokens on 8 nodes x 96 cores: every step, packing and
duplicate clustering included, runs in parallel, so the larger build's core-seconds per token
scale linearly with cores.  Ray's and the libraries' lines go to ``benchmarks/results/logs/corpus-<time>.log``
(``MEDGO_VERBOSE=1``: on the terminal).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medgo import console  # noqa: E402
from medgo.assets import CORPUS_DIR  # noqa: E402
from medgo.corpus.config import SAMPLE_CATEGORIES, CorpusConfig  # noqa: E402
from medgo.corpus.phi_testset import generate  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "corpus.json"
TARGET_TOKENS, NODES, CORES_PER_NODE = 14e9, 8, 96


def sentence_pools() -> dict[str, list[str]]:
    pools = {}
    for cat in SAMPLE_CATEGORIES:
        texts = [json.loads(line)["text"] for line in (CORPUS_DIR / f"{cat}.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
        pools[cat] = [s for t in texts for s in re.split(r"(?<=[。！？\n])", t) if len(s.strip()) >= 6]
    return pools


def synthesize(out: Path, megabytes: float, seed: int) -> Path:
    """JSONL files, one per category, of about ``megabytes`` in total."""
    rng, pools = random.Random(seed), sentence_pools()
    phi = [s.text for s in generate(n_records=2000, seed=seed)]
    out.mkdir(parents=True, exist_ok=True)
    per_cat = megabytes * 1e6 / len(pools)
    for cat, pool in pools.items():
        written, docs = 0, []
        with (out / f"{cat}.jsonl").open("w", encoding="utf-8") as f:
            while written < per_cat:
                r = rng.random()
                if r < 0.01 and docs:
                    text = rng.choice(docs)  # exact duplicate
                elif r < 0.02 and docs:
                    text = rng.choice(docs) + rng.choice(pool)  # near duplicate (one sentence appended)
                else:
                    text = "".join(rng.choice(pool) for _ in range(rng.randint(8, 40)))
                    if cat == "case_report":
                        text = rng.choice(phi) + text
                    docs.append(text)
                    docs = docs[-200:]
                line = '{"text": broken\n' if rng.random() < 0.001 else json.dumps({"text": text}, ensure_ascii=False) + "\n"
                f.write(line)
                written += len(line.encode("utf-8"))
    return out


class PeakMemory:
    """Peak of the summed PSS of this process and all its descendants (Ray's included)."""

    def __init__(self, interval: float = 0.25):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    @staticmethod
    def now() -> int:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def tree_cpu() -> float:
    """CPU seconds (user + system, all threads) of this process and every live descendant."""
    me, total = psutil.Process(), 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def raw_tokenize(files: list[Path], backend) -> tuple[int, float, float]:
    """(tokens, wall seconds, CPU seconds) of batch-encoding every document text."""
    texts = [json.loads(line)["text"] for f in files for line in f.read_text(encoding="utf-8").splitlines() if not line.startswith('{"text": broken')]
    start, cpu, tokens = time.perf_counter(), time.process_time(), 0
    for i in range(0, len(texts), 1024):
        tokens += sum(len(e.ids) for e in backend.encode_batch(texts[i : i + 1024], add_special_tokens=False))
    return tokens, time.perf_counter() - start, time.process_time() - cpu


def pdf_reader_rate(min_seconds: float) -> dict:
    """Pages and characters per second of the PDF reader over the sample PDFs (one process)."""
    from medgo.corpus.pdf import page_count, pdf_text
    from medgo.corpus.samples import FORMATS_DIR

    files = [(str(p), page_count(str(p))) for p in sorted((FORMATS_DIR / "pdf").glob("*.pdf"))]
    pages = chars = 0
    start, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - start < min_seconds:
        for path, n in files:
            chars += len(pdf_text(path, 0, n))
            pages += n
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"files": len(files), "pages": pages, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "pages_per_s": round(pages / seconds, 1), "pages_per_cpu_s": round(pages / max(cpu, 1e-9), 1), "chars_per_s": round(chars / seconds)}


MEMORY_PEAKS: list[int] = []


def build(data: Path, out: Path) -> tuple[dict, float, int, dict, float]:
    from medgo.corpus.build import run

    sources = [{"name": c, "path": str(data / f"{c}.jsonl"), "format": "jsonl", "category": c} for c in SAMPLE_CATEGORIES]
    cfg = CorpusConfig(output_dir=str(out), sources=sources, block_size=2048, read={"chunk_mb": 8, "group_mb": 8})
    gc.collect()
    cpu = tree_cpu()
    with PeakMemory() as mem:
        start = time.perf_counter()
        manifest = run(cfg)
        seconds = time.perf_counter() - start
    metrics = json.loads((cfg.run_dir() / "metrics.json").read_text())["seconds"]
    MEMORY_PEAKS.append(mem.peak)
    return manifest, seconds, mem.peak, metrics, tree_cpu() - cpu


def raw_rate(files: list[Path], backend, build) -> tuple[tuple[int, float, float], tuple]:
    """Raw tokenization of ``files`` before and after ``build()`` (the faster run counts, in case
    the machine is shared), and what ``build()`` returned."""
    before = raw_tokenize(files, backend)
    built = build()
    after = raw_tokenize(files, backend)
    return min(before, after, key=lambda r: r[1]), (before[1], after[1]), built


def size_result(raw: tuple[int, float, float], raw_both: tuple, built: tuple) -> dict:
    """Throughput of one corpus size: the build's tokens per second over raw tokenization's."""
    manifest, seconds, _, steps, cpu = built
    (raw_tokens, raw_s, raw_cpu), out_tokens = raw, manifest["splits"]["train"]["tokens"] + manifest["splits"]["validation"]["tokens"]
    return {
        "raw_tokenize": {"tokens": raw_tokens, "seconds": round(raw_s, 2), "tokens_per_s": round(raw_tokens / raw_s), "cpu_seconds": round(raw_cpu, 2), "seconds_before_and_after": [round(t, 2) for t in raw_both]},
        "end_to_end": {"tokens_out": out_tokens, "seconds": round(seconds, 2), "tokens_per_s": round(out_tokens / seconds), "cpu_seconds": round(cpu, 2), "steps_s": steps},
        "throughput_ratio": round((out_tokens / seconds) / (raw_tokens / raw_s), 3),
        "cpu_throughput_ratio": round((out_tokens / cpu) / (raw_tokens / raw_cpu), 3),
    }


def projection(large: dict, cpus: int) -> dict:
    """Hours for 14B tokens on 8 x 96 cores: every step is parallel, so the core-seconds per token
    of the larger build scale linearly with cores."""
    e2e = large["end_to_end"]
    core_s_per_token = e2e["seconds"] * cpus / e2e["tokens_out"]
    hours = TARGET_TOKENS * core_s_per_token / (NODES * CORES_PER_NODE) / 3600
    return {"hours": round(hours, 2), "core_seconds_per_million_tokens": round(core_s_per_token * 1e6, 1), "assumes": "every step runs in parallel (read, clean, dedup clustering, packing); they scale linearly with cores, from the larger build's wall clock on this machine"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=50, help="size of the 1x corpus in MB")
    parser.add_argument("--scale", type=int, default=4, help="the larger corpus is this many times the 1x size")
    parser.add_argument("--pdf-seconds", type=float, default=5, help="how long to read the sample PDFs for the PDF reader's rate")
    args = parser.parse_args()

    import ray

    from medgo.corpus.pack import backend_from_json
    from medgo.model.tokenizer import load_tokenizer

    cpus = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="medgo-corpus-bench-"))
    try:
        with console.quietly("corpus", RESULTS.parent):
            small = synthesize(tmp / "x1", args.mb, seed=1)
            large = synthesize(tmp / f"x{args.scale}", args.mb * args.scale, seed=2)
            sizes = {d.name: round(sum(f.stat().st_size for f in d.iterdir()) / 1e6, 1) for d in (small, large)}
            backend = backend_from_json(load_tokenizer().backend_tokenizer.to_str())
            pdf_rate = pdf_reader_rate(args.pdf_seconds)
            gc.collect()
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
            time.sleep(2)
            idle = PeakMemory.now()
            x1 = size_result(*raw_rate(sorted(small.iterdir()), backend, lambda: build(small, tmp / "out1")))
            peak1 = MEMORY_PEAKS.pop()
            x4 = size_result(*raw_rate(sorted(large.iterdir()), backend, lambda: build(large, tmp / "out4")))
            peak4 = MEMORY_PEAKS.pop()
            ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ratios = {"x1": x1["throughput_ratio"], f"x{args.scale}": x4["throughput_ratio"]}
    result = {
        "cpus": cpus,
        "corpus_mb": sizes,
        "throughput_ratio": min(ratios.values()),
        "throughput_ratios": ratios,
        "throughput_target": 0.5,
        "x1": x1,
        f"x{args.scale}": x4,
        "memory": {
            "idle_ray_mb": round(idle / 2**20),
            "peak_x1_mb": round(peak1 / 2**20),
            f"peak_x{args.scale}_mb": round(peak4 / 2**20),
            "ratio_total": round(peak4 / peak1, 3),
            "ratio_above_idle": round((peak4 - idle) / max(peak1 - idle, 1), 3),
            "target": 1.3,
        },
        "pdf_reader": pdf_rate,
        "projection_14B_tokens_8x96_cores": projection(x4, cpus),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for name, size in (("x1", x1), (f"x{args.scale}", x4)):
        steps = ", ".join(f"{step} {sec:.1f}" for step, sec in size["end_to_end"]["steps_s"].items())
        print(f"steps {name}, seconds: {steps} (raw tokenize {size['raw_tokenize']['seconds']:.1f})")
    for name, size in (("x1", x1), (f"x{args.scale}", x4)):
        verdict = "met" if size["throughput_ratio"] >= 0.5 else "MISSED"
        print(f"throughput ratio {name} ({sizes[name]} MB, end to end / raw tokenize): {size['throughput_ratio']:.3f} wall-clock, {size['cpu_throughput_ratio']:.3f} per CPU-second (target >= 0.5: {verdict})")
    print(f"peak memory ratio x{args.scale}/x1: total {result['memory']['ratio_total']:.3f}, above idle {result['memory']['ratio_above_idle']:.3f} (target < 1.3)")
    print(f"PDF reader (pdfminer.six): {pdf_rate['pages_per_s']:.1f} pages/s ({pdf_rate['pages_per_cpu_s']:.1f} per CPU-second), {pdf_rate['chars_per_s']:,} characters/s in one process ({pdf_rate['pages']} pages)")
    print(f"projected 14B tokens on {NODES}x{CORES_PER_NODE} cores, parallel steps only: {result['projection_14B_tokens_8x96_cores']['hours']:.2f} h")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
