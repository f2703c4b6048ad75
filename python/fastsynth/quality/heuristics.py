"""Gopher quality and repetition heuristics (Rae et al. 2021, Appendix A.1), native.

All values come from one native pass per document (``fastsynth._native``), threads
with the GIL released. A slow pure-Python implementation of the same definitions,
:mod:`fastsynth.quality._reference`, is the executable specification the tests compare
against.

Definitions (Unicode code points throughout; *whitespace* is Python's ``str.isspace``):

- ``n_chars``: code points in the text. ``n_words``: maximal runs of non-whitespace
  (``text.split()``). ``mean_word_length``: word code points / ``n_words``.
- ``hash_word_ratio``: ``'#'`` count / words. ``ellipsis_word_ratio``: (non-overlapping
  ``"..."`` + ``"…"``) count / words. ``symbol_word_ratio``: the larger of the two —
  Gopher drops a document when the ratio of *either* symbol exceeds 0.1.
- ``frac_words_alpha``: words containing at least one alphabetic character (ASCII
  letters, and code points from U+00C0 up outside punctuation/symbol/emoji blocks).
- ``n_stop_words``: words that, stripped of ASCII punctuation and lowercased, are one
  of Gopher's {the, be, to, of, and, that, have, with}.
- Lines: the text split on ``"\\n"``, each stripped; empty lines are not lines (they
  separate paragraphs). ``frac_lines_end_punct``: lines ending in terminal punctuation
  ``. ! ? … " ' ” ’ 。 ！ ？`` (the C4/FineWeb rule). ``frac_lines_end_ellipsis``: lines
  ending in ``...`` or ``…``. ``frac_lines_start_bullet``: lines starting with a bullet
  (``- * • ‣ ◦ ○ ● ▪ ▫ ■ □ · ⁃ – ► ➢ ✓ ✔``).
- Paragraphs: maximal runs of non-empty lines, text = stripped lines joined by ``\\n``.
- ``dup_line_frac`` / ``dup_para_frac``: lines (paragraphs) equal to an earlier one,
  over all lines (paragraphs). ``dup_line_char_frac`` / ``dup_para_char_frac``: their
  characters over the characters of all lines (paragraphs).
- ``top_{2,3,4}gram_char_frac``: word n-grams (exact, case-sensitive words); the most
  frequent n-gram (ties: more characters, then the first to reach that count); the
  fraction of word characters covered by its occurrences, each character counted once;
  0 when no n-gram repeats.
- ``dup_{5..10}gram_char_frac``: fraction of word characters covered by occurrences of
  every n-gram that occurs more than once, each character counted once (Gopher: "taking
  care not to count characters that occur in overlapping n-grams more than once").
- Undefined values are NaN: ratios over zero words or lines, and everything for a null
  Arrow entry. The empty text has ``n_chars = n_words = n_lines = 0``.

N-grams, lines and paragraphs are compared by 64-bit hashes; a collision within one
document has probability ~n²/2⁶⁵ and is ignored.
"""
from __future__ import annotations

from typing import Any

import numpy as np

import fastsynth._native as _native
from fastsynth._texts import native_chunks, resolve_threads

HEURISTIC_NAMES: tuple[str, ...] = tuple(_native.heuristic_names)


def heuristics(texts: Any, threads: int | None = None) -> dict[str, np.ndarray]:
    """Gopher heuristics for each text (definitions in the module docstring).

    Args:
        texts: list/tuple of ``str``/``bytes`` or a pyarrow string array (zero copy).
            Invalid UTF-8 in ``bytes`` counts as one U+FFFD per bad byte.
        threads: worker threads, ``None``/0 = all cores.

    Returns:
        ``{name: float64 array of shape (n,)}`` in :data:`HEURISTIC_NAMES` order.
    """
    n_threads = resolve_threads(threads)
    parts = [_native.heuristics(chunk, n_threads) for chunk in native_chunks(texts)]
    if not parts:
        table = np.empty((len(HEURISTIC_NAMES), 0), dtype=np.float64)
    else:
        table = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    return {name: table[k] for k, name in enumerate(HEURISTIC_NAMES)}
