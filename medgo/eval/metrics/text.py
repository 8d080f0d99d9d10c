"""Text metrics used by the generation tasks, written to match the reference tools bit for bit.

* :func:`basic_tokenize` — the BERT ``BasicTokenizer`` (lower-casing, accent stripping, every CJK
  character and punctuation mark a token) that the PromptCBLUE evaluator applies before ROUGE.
* :func:`rouge_pltrdy` — ROUGE-1/2/L as the ``rouge`` package (pltrdy) computes it: text split
  into "sentences" at ``.``, distinct n-grams (set semantics), summary-level union-LCS ROUGE-L.
  The IMCS-V2 authors score MRG with it.
* :func:`rouge_chinese` — ROUGE-1/2/L as the ``rouge_chinese`` package computes it: sentences cut
  at Chinese end punctuation, distinct n-grams, plain LCS over the whole token sequence for
  ROUGE-L.  The PromptCBLUE evaluator uses it.
* :func:`corpus_bleu` / :func:`sentence_bleu` — NLTK's BLEU (clipped n-gram precision, closest
  reference length brevity penalty, ``method0`` / ``method7`` smoothing).

All functions take plain strings or token lists and return floats in 0–1; none needs a package
beyond the standard library.
"""

from __future__ import annotations

import math
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Sequence

# --------------------------------------------------------------------------- BERT BasicTokenizer


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch).startswith("C")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def basic_tokenize(text: str, lower_case: bool = True) -> list[str]:
    """Tokens of ``text`` as BERT's ``BasicTokenizer(tokenize_chinese_chars=True)`` splits it."""
    cleaned = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        if _is_whitespace(ch):
            cleaned.append(" ")
        elif _is_cjk(cp):
            cleaned.append(f" {ch} ")
        else:
            cleaned.append(ch)
    text = unicodedata.normalize("NFC", "".join(cleaned))
    out: list[str] = []
    for token in text.split():
        if lower_case:
            token = token.lower()
            token = "".join(c for c in unicodedata.normalize("NFD", token) if unicodedata.category(c) != "Mn")
        piece = ""
        for ch in token:
            if _is_punctuation(ch):
                if piece:
                    out.append(piece)
                    piece = ""
                out.append(ch)
            else:
                piece += ch
        if piece:
            out.append(piece)
    return [t for t in " ".join(out).split()]


# --------------------------------------------------------------------------- ROUGE


def _words(sentences: Sequence[str]) -> list[str]:
    words: list[str] = []
    for s in sentences:
        words.extend(s.split(" "))
    return words


def _ngram_set(words: Sequence[str], n: int) -> set[tuple]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _prf(hyp_count: int, ref_count: int, overlap: int) -> dict[str, float]:
    p = overlap / hyp_count if hyp_count else 0.0
    r = overlap / ref_count if ref_count else 0.0
    return {"f": 2.0 * ((p * r) / (p + r + 1e-8)), "p": p, "r": r}


def _rouge_n(hyp: Sequence[str], ref: Sequence[str], n: int) -> dict[str, float]:
    if not hyp:
        raise ValueError("Hypothesis is empty.")
    if not ref:
        raise ValueError("Reference is empty.")
    h, r = _ngram_set(_words(hyp), n), _ngram_set(_words(ref), n)
    return _prf(len(h), len(r), len(h & r))


def _lcs_table(x: Sequence[str], y: Sequence[str]) -> list[list[int]]:
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        xi, row, prev = x[i - 1], table[i], table[i - 1]
        for j in range(1, len(y) + 1):
            row[j] = prev[j - 1] + 1 if xi == y[j - 1] else max(prev[j], row[j - 1])
    return table


def _lcs_tokens(x: Sequence[str], y: Sequence[str]) -> list[str]:
    """The LCS of ``x`` and ``y`` traced back with pltrdy's tie-breaking (prefer moving in ``y``)."""
    table = _lcs_table(x, y)
    i, j, out = len(x), len(y), []
    while i and j:
        if x[i - 1] == y[j - 1]:
            out.append(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return out[::-1]


def _rouge_l_union(hyp: Sequence[str], ref: Sequence[str]) -> dict[str, float]:
    """pltrdy's summary-level ROUGE-L with ``exclusive=True``: distinct tokens of the union LCS."""
    if not hyp or not ref:
        raise ValueError("Collections must contain at least 1 sentence.")
    m = len(set(_words(ref)))
    n = len(set(_words(hyp)))
    union: set[str] = set()
    llcs = 0
    for ref_s in ref:
        ref_words = _words([ref_s])
        before = len(union)
        for hyp_s in hyp:
            union |= set(_lcs_tokens(ref_words, _words([hyp_s])))
        llcs += len(union) - before
    return _prf(n, m, llcs)


def _rouge_l_plain(hyp: Sequence[str], ref: Sequence[str]) -> dict[str, float]:
    """rouge_chinese's ROUGE-L: one LCS over the concatenated token sequences."""
    if not hyp or not ref:
        raise ValueError("Collections must contain at least 1 sentence.")
    h, r = _words(hyp), _words(ref)
    llcs = _lcs_table(r, h)[len(r)][len(h)]
    return _prf(len(h), len(r), llcs)


def _normalise_sentences(pieces: Sequence[str]) -> list[str]:
    return [" ".join(p.split()) for p in pieces if len(p) > 0]


def rouge_pltrdy(hyp: str, ref: str) -> dict[str, dict[str, float]]:
    """``Rouge().get_scores(hyp, ref)[0]`` of the ``rouge`` package; raises ``ValueError`` on empty input."""
    h = _normalise_sentences(hyp.split("."))
    r = _normalise_sentences(ref.split("."))
    return {"rouge-1": _rouge_n(h, r, 1), "rouge-2": _rouge_n(h, r, 2), "rouge-l": _rouge_l_union(h, r)}


_CUT = [
    (re.compile(r"([。！？\?])([^”’])"), r"\1\n\2"),
    (re.compile(r"(\.{6})([^”’])"), r"\1\n\2"),
    (re.compile(r"(\…{2})([^”’])"), r"\1\n\2"),
    (re.compile(r"([。！？\?][”’])([^，。！？\?])"), r"\1\n\2"),
]


def _cut_sentences(text: str) -> list[str]:
    for pattern, repl in _CUT:
        text = pattern.sub(repl, text)
    return text.rstrip().split("\n")


def rouge_chinese(hyp: str, ref: str) -> dict[str, dict[str, float]]:
    """``Rouge().get_scores(hyp, ref)[0]`` of the ``rouge_chinese`` package (tokens separated by spaces)."""
    h = _normalise_sentences(_cut_sentences(hyp))
    r = _normalise_sentences(_cut_sentences(ref))
    return {"rouge-1": _rouge_n(h, r, 1), "rouge-2": _rouge_n(h, r, 2), "rouge-l": _rouge_l_plain(h, r)}


# --------------------------------------------------------------------------- BLEU (NLTK)


def _ngram_counts(tokens: Sequence[str], n: int) -> Counter:
    if len(tokens) < n:
        return Counter()
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def modified_precision(references: Sequence[Sequence[str]], hypothesis: Sequence[str], n: int) -> tuple[int, int]:
    """Clipped n-gram matches and the (unreduced) denominator, as NLTK's ``modified_precision``."""
    counts = _ngram_counts(hypothesis, n)
    max_counts: dict[tuple, int] = {}
    for reference in references:
        ref_counts = _ngram_counts(reference, n)
        for ngram in counts:
            max_counts[ngram] = max(max_counts.get(ngram, 0), ref_counts[ngram])
    numerator = sum(min(c, max_counts[g]) for g, c in counts.items())
    return numerator, max(1, sum(counts.values()))


def _closest_ref_length(references: Sequence[Sequence[str]], hyp_len: int) -> int:
    return min((len(r) for r in references), key=lambda rl: (abs(rl - hyp_len), rl))


def _brevity_penalty(ref_len: int, hyp_len: int) -> float:
    if hyp_len > ref_len:
        return 1.0
    if hyp_len == 0:
        return 0.0
    return math.exp(1 - ref_len / hyp_len)


def _smooth_method7(p_n: list[tuple[int, int]], references, hypothesis, hyp_len: int, k: int = 5) -> list[float]:
    # method4: shorter translations get proportionally smaller smoothed counts
    vals: list[float] = []
    incvnt = 1
    for num, den in p_n:
        if num == 0 and hyp_len > 1:
            vals.append((1 / (2**incvnt * k / math.log(hyp_len))) / den)
            incvnt += 1
        else:
            vals.append(num / den)
    # method5: average the n-1, n and n+1 gram precisions
    num5, den5 = modified_precision(references, hypothesis, 5)
    plus1 = vals + [num5 / den5]
    prev = vals[0] + 1
    out = []
    for i, p in enumerate(vals):
        prev = (prev + p + plus1[i + 1]) / 3
        out.append(prev)
    return out


def corpus_bleu(
    list_of_references: Sequence[Sequence[Sequence[str]]],
    hypotheses: Sequence[Sequence[str]],
    weights: Sequence[float] = (0.25, 0.25, 0.25, 0.25),
    smoothing: str = "method0",
) -> float:
    """NLTK's ``corpus_bleu`` (``smoothing`` is ``"method0"`` — none — or ``"method7"``)."""
    max_n = len(weights)
    numerators, denominators = Counter(), Counter()
    hyp_total = ref_total = 0
    references: Sequence[Sequence[str]] = []
    hypothesis: Sequence[str] = []
    for references, hypothesis in zip(list_of_references, hypotheses):
        for n in range(1, max_n + 1):
            num, den = modified_precision(references, hypothesis, n)
            numerators[n] += num
            denominators[n] += den
        hyp_total += len(hypothesis)
        ref_total += _closest_ref_length(references, len(hypothesis))
    if numerators[1] == 0:
        return 0.0
    bp = _brevity_penalty(ref_total, hyp_total)
    p_n = [(numerators[n], denominators[n]) for n in range(1, max_n + 1)]
    if smoothing == "method7":
        probs = _smooth_method7(p_n, references, hypothesis, hyp_total)
    elif smoothing == "method0":
        probs = [num / den if num else sys.float_info.min for num, den in p_n]
    else:
        raise ValueError(f"unknown smoothing {smoothing!r}")
    return bp * math.exp(math.fsum(w * math.log(p) for w, p in zip(weights, probs) if p > 0))


def sentence_bleu(
    references: Sequence[Sequence[str]],
    hypothesis: Sequence[str],
    weights: Sequence[float] = (0.25, 0.25, 0.25, 0.25),
    smoothing: str = "method0",
) -> float:
    """NLTK's ``sentence_bleu``: :func:`corpus_bleu` of a single pair."""
    return corpus_bleu([references], [hypothesis], weights, smoothing)
