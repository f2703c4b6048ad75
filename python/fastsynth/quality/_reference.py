"""Plain-Python Gopher heuristics: the executable specification of
:func:`fastsynth.quality.heuristics`, written for clarity, not speed.

Tests compare the native results with these; the benchmark measures the native
speed-up over them. Definitions are in :mod:`fastsynth.quality.heuristics`.
"""
from __future__ import annotations

import math
import string

NAN = math.nan
STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}
TERMINAL = set(".!?\"'\u201d\u2019\u2026\u3002\uff01\uff1f")
BULLETS = set("-*\u00b7\u2013\u2022\u2023\u2043\u25a0\u25a1\u25aa\u25ab\u25ba\u25cb\u25cf\u25e6\u27a2\u2713\u2714")
_NOT_ALPHA_RANGES = [
    (0x0300, 0x036F), (0x2000, 0x2BFF), (0x3000, 0x303F), (0xE000, 0xF8FF), (0xFE10, 0xFE6F),
    (0xFF00, 0xFF20), (0xFF3B, 0xFF40), (0xFF5B, 0xFF65), (0xFFFD, 0xFFFD), (0x1F000, 0x1FAFF),
]


def is_alpha(ch: str) -> bool:
    c = ord(ch)
    if c < 0x80:
        return ch.isascii() and ch.isalpha()
    if c < 0xC0 or c in (0xD7, 0xF7):
        return False
    return not any(lo <= c <= hi for lo, hi in _NOT_ALPHA_RANGES)


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else NAN


def _is_stop_word(word: str) -> bool:
    w = word.strip(string.punctuation)
    return w.isascii() and w.lower() in STOP_WORDS


def _coverage(words: list[str], n: int, starts: list[int]) -> int:
    covered = [False] * len(words)
    for i in starts:
        for j in range(i, i + n):
            covered[j] = True
    return sum(len(w) for w, c in zip(words, covered) if c)


def _top_ngram_starts(words: list[str], n: int) -> list[int]:
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    counts: dict[tuple, int] = {}
    top, top_gram = 0, None
    for g in grams:
        counts[g] = counts.get(g, 0) + 1
        c = counts[g]
        chars = sum(map(len, g))
        if c > top or (c == top and chars > sum(map(len, top_gram))):
            top, top_gram = c, g
    if top < 2:
        return []
    return [i for i, g in enumerate(grams) if g == top_gram]


def _dup_ngram_starts(words: list[str], n: int) -> list[int]:
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    counts: dict[tuple, int] = {}
    for g in grams:
        counts[g] = counts.get(g, 0) + 1
    return [i for i, g in enumerate(grams) if counts[g] >= 2]


def heuristics_one(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    words = text.split()
    n_words = len(words)
    word_chars = sum(len(w) for w in words)
    out["n_chars"] = float(len(text))
    out["n_words"] = float(n_words)
    out["mean_word_length"] = _ratio(word_chars, n_words)
    hashes = text.count("#")
    ellipses = sum(w.count("...") + w.count("\u2026") for w in words)
    out["hash_word_ratio"] = _ratio(hashes, n_words)
    out["ellipsis_word_ratio"] = _ratio(ellipses, n_words)
    out["symbol_word_ratio"] = max(out["hash_word_ratio"], out["ellipsis_word_ratio"]) if n_words else NAN
    out["frac_words_alpha"] = _ratio(sum(any(is_alpha(ch) for ch in w) for w in words), n_words)
    out["n_stop_words"] = float(sum(_is_stop_word(w) for w in words))

    lines, paragraphs, current = [], [], []
    for raw in text.split("\n"):
        line = raw.strip()
        if line:
            lines.append(line)
            current.append(line)
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    if current:
        paragraphs.append("\n".join(current))
    n_lines = len(lines)
    out["n_lines"] = float(n_lines)
    out["frac_lines_end_punct"] = _ratio(sum(ln[-1] in TERMINAL for ln in lines), n_lines)
    out["frac_lines_end_ellipsis"] = _ratio(sum(ln.endswith(("...", "\u2026")) for ln in lines), n_lines)
    out["frac_lines_start_bullet"] = _ratio(sum(ln[0] in BULLETS for ln in lines), n_lines)
    for kind, items in (("line", lines), ("para", paragraphs)):
        seen: set[str] = set()
        dups = dup_chars = 0
        for item in items:
            if item in seen:
                dups += 1
                dup_chars += len(item)
            seen.add(item)
        out[f"dup_{kind}_frac"] = _ratio(dups, len(items))
        out[f"dup_{kind}_char_frac"] = _ratio(dup_chars, sum(len(i) for i in items))
    for n in range(2, 11):
        key = f"top_{n}gram_char_frac" if n <= 4 else f"dup_{n}gram_char_frac"
        if n_words == 0:
            out[key] = NAN
        elif n_words < n:
            out[key] = 0.0
        else:
            starts = _top_ngram_starts(words, n) if n <= 4 else _dup_ngram_starts(words, n)
            out[key] = _coverage(words, n, starts) / word_chars
    out["n_paragraphs"] = float(len(paragraphs))
    return out


def heuristics(texts: list[str]) -> dict[str, list[float]]:
    rows = [heuristics_one(t) for t in texts]
    names = rows[0].keys() if rows else []
    return {k: [r[k] for r in rows] for k in names}
