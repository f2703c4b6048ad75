"""Planner inputs from a TOML file or a flat mapping, and fit data from a CSV file.

TOML layout (every key optional except ``budget`` and at least one phase)::

    budget = 5e6                 # dollars
    constants = "hoffmann"       # hoffmann | hoffmann-unrounded | epoch
    qa_share = 0.10
    inference_tokens = "1T"      # lifetime tokens served, for the inference-aware point
    organic_usd_per_mtok = 0.0
    fit_data = "runs.csv"        # relative to the TOML file
    [hardware]
    gpu_hour_usd = 2.5
    peak_tflops = 989
    mfu = 0.4
    [synthetic]                  # usd_per_mtok, or generator_params [+ tokens_per_s_per_gpu]
    usd_per_mtok = 1.0
    [reserved]                   # other line items as budget shares
    "model development" = 0.30
    [[phase]]
    name = "main"
    params = "3B"
    tokens = "4T"
    synthetic_share = 0.5

Quantities accept plain numbers or strings with a K/M/B/T suffix (``"3B"`` = 3e9).
"""
from __future__ import annotations

import csv
import io
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from fastsynth.errors import ConfigError, InputError
from fastsynth.plan.budget import BudgetInputs, Hardware, Phase, SyntheticSource

_SUFFIX = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
_TOP = {"budget", "constants", "qa_share", "inference_tokens", "organic_usd_per_mtok",
        "fit_data", "hardware", "synthetic", "reserved", "phase"}
_HW = {"gpu_hour_usd", "peak_tflops", "mfu"}
_SYN = {"usd_per_mtok", "generator_params", "tokens_per_s_per_gpu", "decode_mfu"}
_PHASE = {"name", "params", "tokens", "synthetic_share", "flops_per_token"}


def quantity(name: str, value: Any) -> float:
    """A number, or a string like ``"3B"``/``"4T"``/``"5e6"``; raises ConfigError naming it."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip().upper().replace("_", "").replace(",", "")
        scale = 1.0
        if text and text[-1] in _SUFFIX:
            scale, text = _SUFFIX[text[-1]], text[:-1]
        try:
            x = float(text) * scale
            if math.isfinite(x):
                return x
        except ValueError:
            pass
    raise ConfigError(f"{name}: expected a number like 3e9 or '3B', got {value!r}")


def _unknown(keys: Any, allowed: set[str], where: str) -> None:
    extra = sorted(set(keys) - allowed)
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)}; allowed: "
                          f"{', '.join(sorted(allowed))}")


def load_toml(path: str | Path) -> dict[str, Any]:
    """Parse a plan TOML file; syntax errors name the file and line."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}", source=str(p)) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 (byte {e.start}); TOML files must be UTF-8",
                         source=str(p), line=raw[:e.start].count(b"\n") + 1) from None
    except RecursionError:
        raise InputError("not valid TOML: nested too deeply", source=str(p)) from None
    except tomllib.TOMLDecodeError as e:
        # Python < 3.14 only puts the line in the message: "... (at line 2, column 10)".
        found = re.search(r"at line (\d+)", str(e))
        line = getattr(e, "lineno", None) or (int(found.group(1)) if found else None)
        raise InputError(f"not valid TOML: {e}", source=str(p), line=line) from None
    _unknown(data, _TOP, str(p))
    if "fit_data" in data:
        if not isinstance(data["fit_data"], str):
            raise ConfigError(f"{p}: fit_data must be a file name (a string), got "
                              f"{data['fit_data']!r}")
        data["fit_data"] = str((p.parent / data["fit_data"]).resolve())
    return data


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """``data[key]`` as a table (``{}`` when absent); anything else names the key."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: '{key}' must be a table ([{key}] with keys below it), "
                          f"got {type(value).__name__} {value!r:.40}")
    return value


def _phases(data: dict[str, Any], where: str) -> list[dict[str, Any]]:
    value = data.get("phase", [])
    if isinstance(value, dict):
        raise ConfigError(f"{where}: phases are an array of tables: write [[phase]] (double "
                          "brackets) before each phase, not [phase]")
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{where}: 'phase' must be an array of tables ([[phase]] sections), "
                          f"got {value!r:.40}")
    return value


def inputs_from_mapping(data: dict[str, Any], where: str = "config") -> BudgetInputs:
    """Build :class:`BudgetInputs` from a mapping shaped like the TOML file."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of plan settings, got {type(data).__name__}")
    _unknown(data, _TOP, where)
    if "budget" not in data:
        raise ConfigError(f"{where}: 'budget' is required (dollars)")
    if not isinstance(data.get("constants", ""), str):
        raise ConfigError(f"{where}: constants must be a name (hoffmann, hoffmann-unrounded, "
                          f"epoch), got {data['constants']!r}")
    hw_raw = _table(data, "hardware", where)
    _unknown(hw_raw, _HW, f"{where} [hardware]")
    hw_kw: dict[str, float] = {}
    if "gpu_hour_usd" in hw_raw:
        hw_kw["gpu_hour_usd"] = quantity("gpu_hour_usd", hw_raw["gpu_hour_usd"])
    if "peak_tflops" in hw_raw:
        hw_kw["peak_flops"] = quantity("peak_tflops", hw_raw["peak_tflops"]) * 1e12
    if "mfu" in hw_raw:
        hw_kw["mfu"] = quantity("mfu", hw_raw["mfu"])
    syn = None
    if data.get("synthetic"):
        raw = _table(data, "synthetic", where)
        _unknown(raw, _SYN, f"{where} [synthetic]")
        syn = SyntheticSource(**{k: quantity(k, v) for k, v in raw.items()})
    phases = []
    for i, raw in enumerate(_phases(data, where)):
        _unknown(raw, _PHASE, f"{where} [[phase]] #{i + 1}")
        for key in ("params", "tokens"):
            if key not in raw:
                raise ConfigError(f"{where} [[phase]] #{i + 1}: '{key}' is required")
        phases.append(Phase(
            name=str(raw.get("name", f"phase {i + 1}")),
            n_params=quantity("params", raw["params"]),
            n_tokens=quantity("tokens", raw["tokens"]),
            synthetic_share=quantity("synthetic_share", raw.get("synthetic_share", 0.0)),
            flops_per_token=(quantity("flops_per_token", raw["flops_per_token"])
                             if "flops_per_token" in raw else None)))
    reserved = {str(k): quantity(f"reserved {k}", v)
                for k, v in _table(data, "reserved", where).items()}
    return BudgetInputs(
        budget_usd=quantity("budget", data["budget"]), phases=tuple(phases),
        hardware=Hardware(**hw_kw), synthetic=syn,
        qa_share=quantity("qa_share", data.get("qa_share", 0.10)), reserved=reserved,
        organic_usd_per_mtok=quantity("organic_usd_per_mtok",
                                      data.get("organic_usd_per_mtok", 0.0)),
        inference_tokens=quantity("inference_tokens", data.get("inference_tokens", 0.0)),
        constants=str(data.get("constants", "hoffmann")))


def read_fit_data(path: str | Path) -> dict[str, np.ndarray]:
    """Read fit points from a CSV with a header row.

    Columns ``n_params, n_tokens, loss`` select the Chinchilla fit; ``n_tokens`` with
    ``metric`` (or ``loss``) and no ``n_params`` selects the rectified fit. Bad cells raise
    :class:`InputError` naming the file and line.
    """
    p = Path(path)
    try:
        return _read_fit_csv(p)
    except UnicodeDecodeError as e:
        raw = p.read_bytes()
        raise InputError(f"not UTF-8 (byte {e.start}); save the CSV as UTF-8", source=str(p),
                         line=raw[:e.start].count(b"\n") + 1) from None
    except csv.Error as e:
        raise InputError(f"not a readable CSV: {e}", source=str(p)) from None
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}", source=str(p)) from None


def _read_fit_csv(p: Path) -> dict[str, np.ndarray]:
    # Decode the whole file first: a bad byte is then reported with its line, and no row
    # is half-read when it is found.
    text = p.read_bytes().decode("utf-8-sig")
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        if "n_tokens" not in cols:
            raise InputError("fit data needs an 'n_tokens' column (and 'n_params' + 'loss', "
                             "or 'metric')", source=str(p), line=1)
        if "n_params" in cols:
            wanted = ["n_params", "n_tokens", "loss"]
        else:
            wanted = ["n_tokens", "metric" if "metric" in cols else "loss"]
        missing = [c for c in wanted if c not in cols]
        if missing:
            raise InputError(f"fit data lacks column(s) {', '.join(missing)}", source=str(p),
                             line=1)
        values: dict[str, list[float]] = {c: [] for c in wanted}
        for lineno, row in enumerate(reader, start=2):
            row = {(k or "").strip(): v for k, v in row.items()}
            for c in wanted:
                cell = (row.get(c) or "").strip()
                try:
                    x = float(cell)
                except ValueError:
                    raise InputError(f"column {c!r}: {cell!r} is not a number", source=str(p),
                                     line=lineno) from None
                if not math.isfinite(x):
                    raise InputError(f"column {c!r}: {cell!r} is not finite", source=str(p),
                                     line=lineno)
                values[c].append(x)
    out = {c: np.array(v, dtype=np.float64) for c, v in values.items()}
    if "loss" in out and "n_params" not in out:
        out["metric"] = out.pop("loss")
    return out
