"""Argument checks shared by the planner: each raises ConfigError naming the parameter."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastsynth.errors import ConfigError


def _number(name: str, value: Any, what: str) -> float:
    """``float(value)``; strings and bools are refused rather than parsed ("3B"-style
    quantities are parsed by plan.config.quantity, for TOML and CLI input)."""
    if isinstance(value, (str, bytes, bool, np.bool_)):
        raise ConfigError(f"{name}: expected {what}, got {type(value).__name__} {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected {what}, got {value!r}") from None


def count(name: str, value: Any, *, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum`` (bools and floats refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name}: must be >= {minimum}, got {value!r}")
    return int(value)


def interval_level(level: Any) -> float:
    """An interval's coverage, strictly between 0 and 1 (0.95 = the central 95%)."""
    x = _number("level", level, "a number in (0, 1)")
    if not 0 < x < 1:
        raise ConfigError(f"level: must lie in (0, 1), got {level!r}")
    return x


def positive(name: str, value: Any) -> float:
    """``value`` as a float, which must be finite and > 0."""
    x = _number(name, value, "a positive number")
    if not math.isfinite(x) or x <= 0:
        raise ConfigError(f"{name}: must be a finite number > 0, got {value!r}")
    return x


def nonnegative(name: str, value: Any) -> float:
    """``value`` as a float, which must be finite and >= 0."""
    x = _number(name, value, "a number >= 0")
    if not math.isfinite(x) or x < 0:
        raise ConfigError(f"{name}: must be a finite number >= 0, got {value!r}")
    return x


def fraction(name: str, value: Any, *, allow_zero: bool = True) -> float:
    """A share in [0, 1] (or (0, 1] with ``allow_zero=False``, as for MFU)."""
    x = _number(name, value, "a fraction")
    lo_ok = x >= 0 if allow_zero else x > 0
    if not (math.isfinite(x) and lo_ok and x <= 1):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ConfigError(f"{name}: must lie in {interval}, got {value!r}")
    return x


def positive_array(name: str, values: Any) -> np.ndarray:
    """A 1-D float64 array whose entries are all finite and > 0."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected numbers") from None
    arr = np.atleast_1d(arr)
    if arr.ndim != 1:
        raise ConfigError(f"{name}: expected a 1-D sequence, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = "NaN" if np.isnan(arr[i]) else ("infinite" if np.isinf(arr[i]) else "<= 0")
        raise ConfigError(f"{name}: entry {i} is {what} ({arr[i]!r}); all entries must be "
                          f"finite and > 0 ({int(bad.sum())} bad of {arr.size})")
    return arr


def finite_array(name: str, values: Any) -> np.ndarray:
    """A 1-D float64 array whose entries are all finite (NaN and inf rejected)."""
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected numbers") from None
    if arr.ndim != 1:
        raise ConfigError(f"{name}: expected a 1-D sequence, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigError(f"{name}: entry {i} is {arr[i]!r}; all entries must be finite "
                          f"({int(bad.sum())} bad of {arr.size})")
    return arr


def same_length(**arrays: np.ndarray) -> int:
    """The common length of the named arrays, or ConfigError listing the lengths."""
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ConfigError("inputs differ in length: " +
                          ", ".join(f"{k}={n}" for k, n in lengths.items()))
    return next(iter(lengths.values()))
