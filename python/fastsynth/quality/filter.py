"""Keep or reject documents by gzip ratio band and Gopher heuristic thresholds.

Defaults (each a documented choice; ``None`` disables a rule):

- gzip ratio (compressed/original, zlib level 6) within ``gzip_band = (0.3, 0.5)``: the
  reference scenario's band for high-complexity text. Very repetitive text falls
  below it; short or random-looking text (IDs, base64, tables of numbers) above it.
- Gopher quality rules (Rae et al. 2021, A.1.1): 50 ≤ words ≤ 100,000; 3 ≤ mean word
  length ≤ 10; symbol-to-word ratio ≤ 0.1; ≤ 90% of lines start with a bullet;
  ≤ 30% of lines end with an ellipsis; ≥ 80% of words contain an alphabetic character;
  ≥ 2 stop words.
- Gopher repetition rules (Table A1): duplicate lines ≤ 30% (count) and ≤ 20%
  (characters); duplicate paragraphs ≤ 30% and ≤ 20%; most frequent 2/3/4-gram
  character fraction ≤ 0.20/0.18/0.16; duplicate 5..10-gram character fraction
  ≤ 0.15/0.14/0.13/0.12/0.11/0.10.
- Lines ending in terminal punctuation ≥ 12% (FineWeb's relaxation of C4's
  every-line rule).

A rule whose value is NaN (undefined: e.g. no words) fails.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fastsynth.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class Rule:
    """``metric`` must be >= ``low`` and <= ``high`` (either bound may be None)."""

    name: str
    metric: str
    low: float | None = None
    high: float | None = None

    def passes(self, values: np.ndarray) -> np.ndarray:
        ok = ~np.isnan(values)
        if self.low is not None:
            ok &= values >= self.low
        if self.high is not None:
            ok &= values <= self.high
        return ok

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:g} <= {self.metric} <= {self.high:g}"
        if self.low is not None:
            return f"{self.metric} >= {self.low:g}"
        return f"{self.metric} <= {self.high:g}"


_DUP_NGRAM_MAX = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
_TOP_NGRAM_MAX = {2: 0.20, 3: 0.18, 4: 0.16}


def _finite_number(v: Any) -> bool:
    return (not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, float, np.integer, np.floating))
            and math.isfinite(v))


@dataclass(frozen=True)
class QualityFilter:
    """Thresholds of the quality filter; see the module docstring for the defaults."""

    gzip_band: tuple[float, float] | None = (0.3, 0.5)
    min_words: float | None = 50
    max_words: float | None = 100_000
    mean_word_length: tuple[float, float] | None = (3.0, 10.0)
    max_symbol_word_ratio: float | None = 0.1
    max_frac_lines_start_bullet: float | None = 0.9
    max_frac_lines_end_ellipsis: float | None = 0.3
    min_frac_words_alpha: float | None = 0.8
    min_stop_words: float | None = 2
    min_frac_lines_end_punct: float | None = 0.12
    max_dup_line_frac: float | None = 0.30
    max_dup_line_char_frac: float | None = 0.20
    max_dup_para_frac: float | None = 0.30
    max_dup_para_char_frac: float | None = 0.20
    max_top_ngram_char_frac: dict[int, float] | None = field(default_factory=lambda: dict(_TOP_NGRAM_MAX))
    max_dup_ngram_char_frac: dict[int, float] | None = field(default_factory=lambda: dict(_DUP_NGRAM_MAX))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name in ("gzip_band", "mean_word_length"):
                if not isinstance(value, (tuple, list)) or len(value) != 2 \
                        or not all(_finite_number(v) for v in value) or not value[0] <= value[1]:
                    raise ConfigError(f"{f.name} must be (low, high), finite numbers with "
                                      f"low <= high, got {value!r}")
            elif f.name in ("max_top_ngram_char_frac", "max_dup_ngram_char_frac"):
                if not isinstance(value, dict) or not all(
                        isinstance(k, int) and not isinstance(k, bool) and _finite_number(v)
                        for k, v in value.items()):
                    raise ConfigError(f"{f.name} must map n-gram sizes (int) to finite numbers, "
                                      f"got {value!r}")
            elif not _finite_number(value):
                raise ConfigError(f"{f.name} must be a finite number or None, got {value!r}")

    def replace(self, **changes: Any) -> "QualityFilter":
        """A copy with some thresholds changed (``None`` disables a rule)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown filter setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def rules(self) -> list[Rule]:
        r: list[Rule] = []
        if self.gzip_band is not None:
            r.append(Rule("gzip_ratio_band", "gzip_ratio", *self.gzip_band))
        if self.min_words is not None or self.max_words is not None:
            r.append(Rule("word_count", "n_words", self.min_words, self.max_words))
        if self.mean_word_length is not None:
            r.append(Rule("mean_word_length", "mean_word_length", *self.mean_word_length))
        simple = [
            ("symbol_word_ratio", "symbol_word_ratio", None, self.max_symbol_word_ratio),
            ("bullet_lines", "frac_lines_start_bullet", None, self.max_frac_lines_start_bullet),
            ("ellipsis_lines", "frac_lines_end_ellipsis", None, self.max_frac_lines_end_ellipsis),
            ("alpha_words", "frac_words_alpha", self.min_frac_words_alpha, None),
            ("stop_words", "n_stop_words", self.min_stop_words, None),
            ("punct_lines", "frac_lines_end_punct", self.min_frac_lines_end_punct, None),
            ("dup_lines", "dup_line_frac", None, self.max_dup_line_frac),
            ("dup_line_chars", "dup_line_char_frac", None, self.max_dup_line_char_frac),
            ("dup_paragraphs", "dup_para_frac", None, self.max_dup_para_frac),
            ("dup_paragraph_chars", "dup_para_char_frac", None, self.max_dup_para_char_frac),
        ]
        r.extend(Rule(name, metric, lo, hi) for name, metric, lo, hi in simple
                 if lo is not None or hi is not None)
        for n, hi in sorted((self.max_top_ngram_char_frac or {}).items()):
            r.append(Rule(f"top_{n}gram", f"top_{n}gram_char_frac", None, hi))
        for n, hi in sorted((self.max_dup_ngram_char_frac or {}).items()):
            r.append(Rule(f"dup_{n}gram", f"dup_{n}gram_char_frac", None, hi))
        return r

    def apply(self, scores: dict[str, np.ndarray]) -> "FilterResult":
        """Evaluate every rule on ``scores`` (``{"gzip_ratio": ..., **heuristics(...)}``)."""
        rules = self.rules()
        missing = sorted({r.metric for r in rules} - set(scores))
        if missing:
            raise ConfigError(f"scores lack the metric(s) the filter needs: {', '.join(missing)}")
        n = len(next(iter(scores.values()))) if scores else 0
        lengths = {r.metric: len(scores[r.metric]) for r in rules}
        if any(v != n for v in lengths.values()):
            raise ConfigError(f"scores must hold one value per document for every metric; "
                              f"lengths differ: {dict(sorted(lengths.items()))}")
        passed = np.ones((len(rules), n), dtype=bool)
        for k, rule in enumerate(rules):
            passed[k] = rule.passes(np.asarray(scores[rule.metric], dtype=np.float64))
        return FilterResult(rules=rules, passed=passed)


@dataclass
class FilterResult:
    """``passed[k, i]``: document i passes rule k. ``keep``: passes every rule."""

    rules: list[Rule]
    passed: np.ndarray

    @property
    def keep(self) -> np.ndarray:
        return self.passed.all(axis=0)

    def reasons(self) -> list[list[str]]:
        """Names of the failed rules, per document (empty for kept ones)."""
        names = [r.name for r in self.rules]
        failed = ~self.passed
        return [[names[k] for k in np.flatnonzero(failed[:, i])] for i in range(failed.shape[1])]

    def reasons_arrow(self) -> "pa.ListArray":
        """:meth:`reasons` as a pyarrow ``list<string>`` array, built without a
        per-document Python loop (for large batches)."""
        import pyarrow as pa

        failed_t = ~self.passed.T                        # (docs, rules)
        doc_idx, rule_idx = np.nonzero(failed_t)         # row-major: grouped by document
        offsets = np.zeros(failed_t.shape[0] + 1, dtype=np.int32)
        np.cumsum(failed_t.sum(axis=1), out=offsets[1:])
        names = pa.array([r.name for r in self.rules], type=pa.string())
        return pa.ListArray.from_arrays(pa.array(offsets), names.take(pa.array(rule_idx)))

    def first_reason(self) -> np.ndarray:
        """The first failed rule's name per document (``""`` when kept): counts of
        these add up to the number of rejected documents."""
        names = np.array([r.name for r in self.rules] + [""], dtype=object)
        failed = ~self.passed
        first = np.where(failed.any(axis=0), failed.argmax(axis=0), len(self.rules))
        return names[first]
