"""Vectorised hashing of texts: 64-bit document hashes and character n-gram hashes.

Character n-grams are hashed with a polynomial rolling hash over Unicode code points,
finished with the splitmix64 mixer, all in numpy (wrapping uint64 arithmetic), so a document
of a million characters costs a handful of vector operations rather than a Python loop.
"""

from __future__ import annotations

import hashlib

import numpy as np

_P = np.uint64(0x100000001B3)  # FNV-64 prime: odd, so the polynomial is a bijection per step


def text_hash(text: str) -> int:
    """Signed 64-bit BLAKE2b hash of a text (fits an int64 column)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def codepoints(text: str) -> np.ndarray:
    """The text's Unicode code points as a uint64 array."""
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.uint64)


SPLITMIX64 = tuple(np.uint64(c) for c in (30, 0xBF58476D1CE4E5B9, 27, 0x94D049BB133111EB, 31))
MURMUR3_FMIX32 = tuple(np.uint32(c) for c in (16, 0x85EBCA6B, 13, 0xC2B2AE35, 16))


def finalise(x: np.ndarray, constants: tuple) -> np.ndarray:
    """Xor-shift-multiply finaliser (shift, multiplier, shift, multiplier, shift), wrapping in the
    constants' integer width: every input bit reaches the output."""
    s1, m1, s2, m2, s3 = constants
    x = (x ^ (x >> s1)) * m1
    x = (x ^ (x >> s2)) * m2
    return x ^ (x >> s3)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (uint64 in, uint64 out)."""
    return finalise(x, SPLITMIX64)


def fmix32(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (uint32 in, uint32 out), datasketch's pre-mix."""
    return finalise(x, MURMUR3_FMIX32)


def ngram_hashes(cps: np.ndarray, n: int) -> np.ndarray:
    """uint64 hash of every character n-gram (position i covers ``cps[i:i+n]``)."""
    m = len(cps) - n + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64)
    h = np.zeros(m, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * _P + cps[k : k + m]
        return mix64(h)


def combine_rows(matrix: np.ndarray, salt: np.ndarray) -> np.ndarray:
    """Hash each row of a 2-D integer matrix (plus a per-row salt) into one uint64."""
    h = salt.astype(np.uint64)
    with np.errstate(over="ignore"):
        for j in range(matrix.shape[1]):
            h = mix64(h * _P + matrix[:, j].astype(np.uint64))
    return h
