"""LSH band parameters: the (bands, rows) that minimise weighted false-positive and
false-negative probability mass, as datasketch's ``_optimal_param`` defines them.

A pair of Jaccard s becomes a candidate with probability P(s) = 1 - (1 - s^r)^b. With
threshold t: FP(b, r) = integral_0^t P(s) ds and FN(b, r) = integral_t^1 (1 - P(s)) ds;
the answer minimises w_fp*FP + w_fn*FN over b*r <= num_perm, ties to the smallest b, then
the smallest r (datasketch's scan order). P is a polynomial of degree b*r <= num_perm, so
Gauss-Legendre quadrature with num_perm//2 + 1 nodes integrates it exactly; all (b, r)
are evaluated at once with numpy and the result is cached.
"""
from __future__ import annotations

import functools
import numbers

import numpy as np

from fastsynth.dedup.minhash import check_num_perm
from fastsynth.errors import ConfigError


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float in (0, 1]; a string ("0.8") or bool is refused, not parsed."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise ConfigError(f"threshold must be a number in (0, 1], got {type(threshold).__name__} "
                          f"{threshold!r}")
    t = float(threshold)
    if not 0.0 < t <= 1.0:
        raise ConfigError(f"threshold must be in (0, 1], got {threshold!r}")
    return t


def check_bands_rows(params: object, num_perm: int) -> tuple[int, int]:
    """An explicit ``params=(bands, rows)``: two positive integers with bands*rows <= num_perm."""
    try:
        bands, rows = params  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ConfigError(f"params must be a pair (bands, rows), got {params!r}") from None
    for v in (bands, rows):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ConfigError(f"params (bands, rows) must be integers, got {params!r}")
    if bands < 1 or rows < 1 or bands * rows > num_perm:
        raise ConfigError(f"params (bands, rows) must be positive with bands*rows <= num_perm "
                          f"({num_perm}), got {params!r}")
    return int(bands), int(rows)


@functools.lru_cache(maxsize=None)
def _nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def _none_of(s: np.ndarray, r: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(1 - s^r)^b for every (b, r) row and node s, through logs; values below 1e-300 are
    set to 0 first, because subnormal floats make numpy's power ~50x slower and add
    nothing to integrals compared at ~1e-12."""
    sr = np.exp(r * np.log(s)[None, :])
    sr[sr < 1e-300] = 0.0
    out = np.exp(b * np.log1p(-np.minimum(sr, 1.0)))
    out[out < 1e-300] = 0.0
    return out


@functools.lru_cache(maxsize=256)
def _optimal(threshold: float, num_perm: int, w_fp: float, w_fn: float) -> tuple[int, int]:
    bs, rs = [], []
    for b in range(1, num_perm + 1):
        r = np.arange(1, num_perm // b + 1)
        bs.append(np.full(r.size, b))
        rs.append(r)
    b = np.concatenate(bs).astype(np.float64)[:, None]
    r = np.concatenate(rs).astype(np.float64)[:, None]
    x, w = _nodes(num_perm // 2 + 1)
    # Map [-1, 1] onto [0, t] and [t, 1].
    s_lo = (x + 1.0) * (threshold / 2.0)
    s_hi = threshold + (x + 1.0) * ((1.0 - threshold) / 2.0)
    err = np.empty(b.shape[0])
    step = max(1, 4_000_000 // x.size)  # bound the temporaries to ~32 MB
    for i in range(0, b.shape[0], step):
        bi, ri = b[i:i + step], r[i:i + step]
        fp = (1.0 - _none_of(s_lo, ri, bi)) @ w * (threshold / 2.0)
        fn = _none_of(s_hi, ri, bi) @ w * ((1.0 - threshold) / 2.0)
        err[i:i + step] = w_fp * fp + w_fn * fn
    k = int(np.argmin(err))  # first minimum = datasketch's scan order
    return int(b[k, 0]), int(r[k, 0])


def optimal_params(threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """``(bands, rows)`` for an LSH index at Jaccard ``threshold`` with ``num_perm`` permutations.

    ``weights`` = (false-positive weight, false-negative weight), non-negative, summing to 1.
    Equal to ``datasketch.lsh._optimal_param(threshold, num_perm, *weights)``.
    """
    t = check_threshold(threshold)
    num_perm = check_num_perm(num_perm)
    try:
        w_fp, w_fn = weights
    except (TypeError, ValueError):
        raise ConfigError(f"weights must be a pair of numbers, got {weights!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in (w_fp, w_fn)):
        raise ConfigError(f"weights must be a pair of numbers, got {weights!r}")
    w_fp, w_fn = float(w_fp), float(w_fn)
    if not (w_fp >= 0 and w_fn >= 0) or abs(w_fp + w_fn - 1.0) > 1e-9:
        raise ConfigError(f"weights must be non-negative and sum to 1, got {weights!r}")
    return _optimal(t, num_perm, w_fp, w_fn)
