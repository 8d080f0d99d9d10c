"""De-identification quality and speed on the PHI evaluation set, tune and held-out halves apart.

    .venv/bin/python benchmarks/phi.py               # quality, then speed on 4 MB of corpus text
    .venv/bin/python benchmarks/phi.py --mb 1        # a quicker speed measurement

The set (``tests/corpus/data/phi_eval.jsonl``, written by ``tests/corpus/phi_eval_set.py``) holds
clinical sentences with planted identifiers and clean sentences full of look-alikes; it is split
by style into a ``tune`` half and a ``heldout`` half.  For each half, ``medgo.corpus.phi.deidentify``
is run on every sentence and scored:

* recall per type: a planted identifier is found when every character of its span was altered
  (difflib alignment of input and output) and its surface string occurs in the output fewer
  times than in the input by at least the number of times it was planted;
* precision: the share of altered input characters that lie inside planted spans;
* clean altered: the share of clean sentences whose output differs from the input.

Speed, measured in the same run on the same text (sample-corpus documents with evaluation
sentences mixed in): ``deidentify`` in MB/s on one core, beside raw tokenization with the Rust
tokenizer (all threads, and per CPU-second).  Writes ``benchmarks/results/phi.json``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "corpus"))

from phi_eval_set import Record, load  # noqa: E402

from medgo.assets import CORPUS_DIR  # noqa: E402
from medgo.corpus.config import SAMPLE_CATEGORIES  # noqa: E402
from medgo.corpus.phi import deidentify  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "phi.json"
STRUCTURED = ("email", "id_card", "birth_date", "record_number", "bed_number", "phone")
TARGETS = {"structured_recall": 0.99, "name_recall": 0.95, "clean_altered": 0.02}


TAG = re.compile(r"\[[^\[\]\s]{1,8}\]")


def altered_mask(text: str, output: str) -> list[bool]:
    """For each input character, whether the alignment with the output replaced or deleted it.

    Each bracketed tag of the output that the input does not contain (``[出生日期]``) is aligned
    as one opaque character, so a tag's letters never pair with the characters it replaced.
    """
    output = TAG.sub(lambda m: m.group() if m.group() in text else "\ue000", output)
    mask = [False] * len(text)
    for op, i1, i2, _, _ in difflib.SequenceMatcher(None, text, output, autojunk=False).get_opcodes():
        if op in ("replace", "delete"):
            mask[i1:i2] = [True] * (i2 - i1)
    return mask


def found(record: Record, output: str, mask: list[bool], span) -> bool:
    planted = sum(s.text == span.text for s in record.spans)
    gone = output.count(span.text) <= record.text.count(span.text) - planted
    return gone and all(mask[span.start : span.end])


def score(records: list[Record]) -> dict:
    """Recall per type, precision and clean-altered share of ``deidentify`` on ``records``."""
    hits, totals, inside, altered, clean, clean_changed = Counter(), Counter(), 0, 0, 0, 0
    missed, changed = [], []
    for r in records:
        output, _ = deidentify(r.text)
        mask = altered_mask(r.text, output)
        planted = [False] * len(r.text)
        for s in r.spans:
            planted[s.start : s.end] = [True] * (s.end - s.start)
            totals[s.type] += 1
            if found(r, output, mask, s):
                hits[s.type] += 1
            else:
                missed.append({"id": r.id, "type": s.type, "text": s.text})
        altered += sum(mask)
        inside += sum(m and p for m, p in zip(mask, planted))
        if r.clean:
            clean += 1
            clean_changed += output != r.text
            if output != r.text:
                changed.append({"id": r.id, "output": output})
    return {**summary(hits, totals, inside, altered, clean, clean_changed, missed), "clean_changed": changed}


def summary(hits: Counter, totals: Counter, inside: int, altered: int, clean: int, clean_changed: int, missed: list) -> dict:
    structured = [t for t in STRUCTURED if totals[t]]
    return {
        "recall": {t: round(hits[t] / totals[t], 4) for t in sorted(totals)},
        "planted": dict(sorted(totals.items())),
        "structured_recall": round(sum(hits[t] for t in structured) / sum(totals[t] for t in structured), 4),
        "name_recall": round(hits["name"] / totals["name"], 4) if totals["name"] else None,
        "precision": round(inside / altered, 4) if altered else None,
        "clean_sentences": clean,
        "clean_altered": round(clean_changed / clean, 4) if clean else None,
        "missed": missed,
    }


def speed_texts(records: list[Record], megabytes: float, seed: int = 0) -> list[str]:
    """Documents of 8-40 sample-corpus sentences, one in four led by an evaluation sentence."""
    rng, pool = random.Random(seed), []
    for cat in SAMPLE_CATEGORIES:
        for line in (CORPUS_DIR / f"{cat}.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                pool += [s for s in re.split(r"(?<=[。！？\n])", json.loads(line)["text"]) if len(s.strip()) >= 6]
    texts, size = [], 0
    while size < megabytes * 1e6:
        text = "".join(rng.choice(pool) for _ in range(rng.randint(8, 40)))
        if rng.random() < 0.25:
            text = rng.choice(records).text + text
        texts.append(text)
        size += len(text.encode("utf-8"))
    return texts


def speed(texts: list[str]) -> dict:
    """MB/s of ``deidentify`` (one core) and of raw tokenization, wall-clock and per CPU-second
    (on a shared machine the CPU-second figures are the steadier ones)."""
    from medgo.corpus.pack import backend_from_json
    from medgo.model.tokenizer import load_tokenizer

    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    backend = backend_from_json(load_tokenizer().backend_tokenizer.to_str())
    raw = min((timed(lambda: [backend.encode_batch(texts[i : i + 1024], add_special_tokens=False) for i in range(0, len(texts), 1024)]) for _ in range(2)))
    phi = timed(lambda: [deidentify(t) for t in texts])
    return {
        "mb": round(mb, 2),
        "deidentify_mb_per_s": round(mb / phi[0], 3),
        "deidentify_mb_per_cpu_s": round(mb / phi[1], 3),
        "raw_tokenize_mb_per_s": round(mb / raw[0], 3),
        "raw_tokenize_mb_per_cpu_s": round(mb / raw[1], 3),
        "deidentify_over_raw_per_cpu_s": round(raw[1] / phi[1], 3),
    }


def timed(fn) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def report(result: dict) -> None:
    for half in ("tune", "heldout"):
        q = result[half]
        recall = "  ".join(f"{t} {v:.3f}" for t, v in q["recall"].items())
        print(f"[{half}] recall: {recall}")
        print(f"[{half}] structured {q['structured_recall']:.4f} (target >= {TARGETS['structured_recall']}), names {q['name_recall']:.4f} (target >= {TARGETS['name_recall']}), "
              f"precision {q['precision']:.4f}, clean altered {q['clean_altered']:.4f} of {q['clean_sentences']} (target <= {TARGETS['clean_altered']}), {len(q['missed'])} missed")
    s = result["speed"]
    print(f"speed on {s['mb']} MB: deidentify {s['deidentify_mb_per_s']:.2f} MB/s (one core), {s['deidentify_mb_per_cpu_s']:.2f} MB per CPU-second; raw tokenize {s['raw_tokenize_mb_per_s']:.2f} MB/s wall, "
          f"{s['raw_tokenize_mb_per_cpu_s']:.2f} MB per CPU-second; deidentify / raw per CPU-second {s['deidentify_over_raw_per_cpu_s']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=4, help="MB of text for the speed measurement")
    parser.add_argument("--show-missed", action="store_true", help="print every missed identifier of the tune half")
    args = parser.parse_args()
    records = load()
    result = {half: score([r for r in records if r.split == half]) for half in ("tune", "heldout")}
    result["targets"] = TARGETS
    result["speed"] = speed(speed_texts(records, args.mb))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    if args.show_missed:
        for m in result["tune"]["missed"]:
            print(f"missed {m['type']:<14} {m['text']:<30} {m['id']}")
        for c in result["tune"]["clean_changed"]:
            print(f"clean altered {c['id']}: {c['output']}")
    report(result)


if __name__ == "__main__":
    main()
