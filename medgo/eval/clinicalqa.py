"""ClinicalQA: four-option clinical multiple choice, scored three ways.

    medgo eval run --config jobs/configs/eval/tiny.yaml --set cblue.tasks=[]   # ClinicalQA only

Questions come from JSONL ``{"question", "options": {"A".."D"}, "answer"}`` or CMMLU-style CSV
(``Question,A,B,C,D,Answer``, an unnamed leading index column allowed).  Scores:

- ``accuracy``: the answer letter extracted *strictly* from the generation (:func:`extract_letter`);
  an unparsed reply counts as wrong and ``unparsed_rate`` reports how many there were;
- ``accuracy_loglik``: the option with the highest log-likelihood after the prompt;
- ``consistency`` / ``consistency_loglik``: the same questions with their options shuffled
  (seeded); the share of questions where the model picks the same option *text* both times
  (an unparsed reply on either side counts as inconsistent).
"""

from __future__ import annotations

import csv
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

LETTERS = ("A", "B", "C", "D")


class ClinicalQAError(ValueError):
    """A question file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Question:
    uid: str
    question: str
    options: dict[str, str]
    answer: str
    perm: tuple[str, ...] = field(default=LETTERS)
    """``perm[i]`` is the original letter shown at position ``LETTERS[i]`` (identity when unshuffled)."""


def parse_question(record: dict, where: str) -> Question:
    """One validated question from a ``{question, options, answer}`` dict; errors name ``where``."""
    q = str(record.get("question") or "").strip()
    opts = record.get("options")
    if not q:
        raise ClinicalQAError(f"{where}: 'question' is missing or empty")
    if not isinstance(opts, dict) or sorted(opts) != list(LETTERS):
        raise ClinicalQAError(f"{where}: 'options' must have exactly the keys A, B, C, D (got {opts!r})")
    empty = [k for k in LETTERS if not str(opts[k]).strip()]
    if empty:
        raise ClinicalQAError(f"{where}: option(s) {', '.join(empty)} are empty")
    answer = str(record.get("answer") or "").strip().upper()
    if answer not in LETTERS:
        raise ClinicalQAError(f"{where}: 'answer' must be one of A, B, C, D (got {record.get('answer')!r})")
    return Question(where, q, {k: str(opts[k]).strip() for k in LETTERS}, answer)


def _read_jsonl(path: Path) -> list[Question]:
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ClinicalQAError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ClinicalQAError(f"{path}:{n}: expected a JSON object")
            out.append(parse_question(record, f"{path.name}:{n}"))
    return out


def _read_csv(path: Path) -> list[Question]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"Question", *LETTERS, "Answer"} - set(reader.fieldnames or [])
        if missing:
            raise ClinicalQAError(f"{path}: CSV header lacks column(s) {', '.join(sorted(missing))} (expected Question,A,B,C,D,Answer)")
        return [
            parse_question({"question": row["Question"], "options": {k: row[k] or "" for k in LETTERS}, "answer": row["Answer"]}, f"{path.name}:{n}")
            for n, row in enumerate(reader, 2)
        ]


def load_questions(paths: list[str | Path], max_samples: int | None = None) -> list[Question]:
    """Every question of every file, validated (the error names file and line); ``uid`` is ``file:line``."""
    out: list[Question] = []
    names = [Path(p).name for p in paths]
    if len(set(names)) != len(names):
        raise ClinicalQAError(f"ClinicalQA file names must differ (they name the questions): {', '.join(map(str, paths))}")
    for path in map(Path, paths):
        if not path.is_file():
            raise ClinicalQAError(f"ClinicalQA file not found: {path}")
        questions = _read_csv(path) if path.suffix == ".csv" else _read_jsonl(path)
        out.extend(questions[:max_samples] if max_samples else questions)
    if not out:
        raise ClinicalQAError(f"no questions in {', '.join(map(str, paths))}")
    return out


def default_files() -> list[Path]:
    """The embedded samples (``medgo/assets/clinicalqa/*.jsonl|csv``)."""
    from medgo.assets import ASSETS

    return sorted(p for p in (ASSETS / "clinicalqa").glob("*") if p.suffix in {".jsonl", ".csv"})


def shuffled(q: Question, rng: random.Random) -> Question:
    """The question with its options in a new order (never the original one) and the answer moved."""
    perm = list(LETTERS)
    while tuple(perm) == LETTERS:
        rng.shuffle(perm)
    options = {shown: q.options[orig] for shown, orig in zip(LETTERS, perm)}
    return Question(q.uid + "#shuffled", q.question, options, LETTERS[perm.index(q.answer)], tuple(perm))


def shuffle_all(questions: list[Question], seed: int) -> list[Question]:
    rng = random.Random(seed)
    return [shuffled(q, rng) for q in questions]


def to_original(q: Question, letter: str | None) -> str | None:
    """Map a letter chosen on the shown (maybe shuffled) options back to the original letter."""
    return None if letter is None else q.perm[LETTERS.index(letter)]


_LEADING = re.compile(r"^[\s(（【\[]*([A-D])(?![A-Za-z])")
_STATED = re.compile(r"(?:答案|正确选项|选项|应选|选择|answer)\s*(?:是|为|应为|应该是|:|：|is)?\s*[:：]?\s*[(（【\[]?\s*([A-D])(?![A-Za-z])", re.IGNORECASE)


_STANDALONE = re.compile(r"(?<![A-Za-z])([A-D])(?![A-Za-z])")
_HEDGE = re.compile(
    r"(?<![A-Za-z])[A-D][)）】\]]?\s*(?:(?:或者|或是|或|还是|和|与|及|跟|、|/|,|，|or|and|&)\s*)+(?:选项)?\s*[(（【\[]?[A-D](?![A-Za-z0-9])",
    re.IGNORECASE,
)
"""Two option letters joined by 或/和/、/or...: a hedge, not an answer."""


def extract_letter(text: str) -> str | None:
    """The answer letter, or ``None`` when the reply does not state exactly one.

    Accepted: a reply that *starts* with the letter (``"C"``, ``"C. 胰岛素"``, ``"(C)"``), or that
    states it after 答案/选项/选择 (``"答案：C"``, ``"正确答案是C"``) and names no other option
    letter.  A hedge (``"A或B"``, ``"A和C都对"``, ``"答案是A或者B"``), several stated letters, or
    none is unparsed: a hedge is not an answer.
    """
    if _HEDGE.search(text):
        return None
    lead = _LEADING.match(text)
    if lead:
        return lead.group(1)
    stated = {m.group(1).upper() for m in _STATED.finditer(text)}
    if len(stated) != 1 or set(_STANDALONE.findall(text)) != stated:
        return None
    return stated.pop()


def score(questions: list[Question], letters: list[str | None], shuffled_qs: list[Question] | None = None, shuffled_letters: list[str | None] | None = None) -> dict:
    """Accuracy (unparsed counted wrong), unparsed rate and, with the shuffled pass, consistency."""
    n = len(questions)
    correct = sum(q.answer == x for q, x in zip(questions, letters))
    unparsed = sum(x is None for x in letters)
    out = {"n": n, "correct": correct, "accuracy": 100.0 * correct / n, "unparsed": unparsed, "unparsed_rate": 100.0 * unparsed / n}
    if shuffled_qs is not None and shuffled_letters is not None:
        orig = [to_original(q, x) for q, x in zip(shuffled_qs, shuffled_letters)]
        same = sum(a is not None and a == b for a, b in zip(letters, orig))
        out |= {"accuracy_shuffled": 100.0 * sum(q.answer == x for q, x in zip(shuffled_qs, shuffled_letters)) / n, "consistency": 100.0 * same / n}
    return out
