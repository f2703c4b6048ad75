"""Hardening of fastsynth.plan's inputs (issue 15): TOML tables of the wrong shape, files
that are not UTF-8 and out-of-range fit arguments are named errors, not tracebacks or
silent acceptance. Each test failed before its fix."""
from __future__ import annotations

import numpy as np
import pytest

from fastsynth import plan
from fastsynth.errors import ConfigError, InputError
from fastsynth.plan.budget import Hardware
from fastsynth.plan.config import inputs_from_mapping, load_toml, read_fit_data

BASE = 'budget = 5e6\n[[phase]]\nparams = "1B"\ntokens = "20B"\n'


def _toml(tmp_path, text: str | bytes):
    p = tmp_path / "plan.toml"
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


@pytest.mark.parametrize("extra,match", [
    ('hardware = "fast"\n', r"'hardware' must be a table"),          # was: ValueError traceback
    ('synthetic = 3\n', r"'synthetic' must be a table"),
    ('reserved = ["a"]\n', r"'reserved' must be a table"),
    ('constants = 5\n', r"constants must be a name"),
])
def test_wrongly_shaped_tables_are_named(tmp_path, extra, match):
    data = load_toml(_toml(tmp_path, extra + BASE))
    with pytest.raises(ConfigError, match=match):
        inputs_from_mapping(data, "plan.toml")


def test_single_phase_table_says_to_use_double_brackets(tmp_path):
    """Was: a [phase] table was iterated by key and reported as 'unknown key(s) a, m, p, r, s'."""
    data = load_toml(_toml(tmp_path, 'budget = 5e6\n[phase]\nname = "main"\nparams = "1B"\n'
                                     'tokens = "20B"\n'))
    with pytest.raises(ConfigError, match=r"\[\[phase\]\]"):
        inputs_from_mapping(data, "plan.toml")
    with pytest.raises(ConfigError, match="array of tables"):
        inputs_from_mapping({"budget": 1e6, "phase": ["1B"]})


def test_non_utf8_files_name_the_line(tmp_path):
    """Was: a UnicodeDecodeError traceback for non-UTF-8 TOML and CSV."""
    p = _toml(tmp_path, b"budget = 5e6\n# caf\xe9 budget\n")
    with pytest.raises(InputError, match=r"plan\.toml:2: not UTF-8"):
        load_toml(p)
    csv_path = tmp_path / "runs.csv"
    csv_path.write_bytes(b"n_params,n_tokens,loss\n1e8,2e9,3.1\n2e8,4e9,2.9 \xff\n")
    with pytest.raises(InputError, match=r"runs\.csv:3: not UTF-8"):
        read_fit_data(csv_path)
    csv_path.write_bytes(b"\xef\xbb\xbfn_tokens,metric\n1e9,0.5\n2e9,0.4\n")  # a BOM is fine
    assert read_fit_data(csv_path)["metric"].tolist() == [0.5, 0.4]
    with pytest.raises(InputError, match=r"missing\.toml: cannot read"):
        load_toml(tmp_path / "missing.toml")


def _points():
    n = np.array([1e8, 2e8, 4e8, 8e8, 1.6e9, 3.2e9])
    d = 20 * n
    return n, d, 1.69 + 406.4 / n**0.34 + 410.7 / d**0.28


@pytest.mark.parametrize("kwargs,name", [
    ({"n_bootstrap": -5}, "n_bootstrap"), ({"n_bootstrap": 2.5}, "n_bootstrap"),
    ({"n_bootstrap": True}, "n_bootstrap"), ({"bootstrap_starts": 0}, "bootstrap_starts"),
    ({"seed": -1}, "seed"), ({"max_iter": 0}, "max_iter"), ({"delta": 0.0}, "delta"),
    ({"starts": np.zeros((3, 4))}, "starts"), ({"starts": [[0, 0, 0, np.nan, 0]]}, "starts"),
])
def test_fit_chinchilla_checks_its_arguments(kwargs, name):
    """Was: n_bootstrap=-5 was accepted (no bootstrap, no word)."""
    with pytest.raises(ConfigError, match=name):
        plan.fit_chinchilla(*_points(), **kwargs)


@pytest.mark.parametrize("kwargs,name", [({"n_bootstrap": -5}, "n_bootstrap"),
                                         ({"n_bootstrap": "10"}, "n_bootstrap"),
                                         ({"seed": 1.5}, "seed")])
def test_fit_rectified_checks_its_arguments(kwargs, name):
    d = np.array([1e9, 3e9, 1e10, 3e10, 1e11])
    with pytest.raises(ConfigError, match=name):
        plan.fit_rectified(d, 0.2 + 5 / (1e2 + d**0.3), **kwargs)


def test_numbers_are_not_parsed_from_strings_in_python():
    """The Python API takes numbers; '3B'-style strings are for TOML/CLI input only."""
    with pytest.raises(ConfigError, match="mfu"):
        Hardware(mfu="0.4")
    with pytest.raises(ConfigError, match="flops"):
        plan.chinchilla_optimal("5.76e23")
    with pytest.raises(ConfigError, match="gpu_hour_usd"):
        Hardware(gpu_hour_usd=True)
    assert Hardware(mfu=np.float64(0.4)).mfu == 0.4


def test_interval_level_is_checked():
    """Was: param_intervals(level=2) raised numpy's 'Quantiles must be in the range [0, 1]'."""
    fit = plan.fit_rectified(np.array([1e9, 3e9, 1e10, 3e10, 1e11, 3e11]),
                             np.array([0.50, 0.41, 0.33, 0.28, 0.245, 0.225]), n_bootstrap=3)
    for bad in (2, 0, "0.9", True):
        with pytest.raises(ConfigError, match="level"):
            fit.param_intervals(level=bad)
    lo, hi = fit.param_intervals(0.9)["beta"]
    assert lo <= hi


def test_prediction_level_is_checked():
    fit = plan.fit_rectified(np.array([1e9, 3e9, 1e10, 3e10, 1e11, 3e11]),
                             np.array([0.50, 0.41, 0.33, 0.28, 0.245, 0.225]), n_bootstrap=3)
    with pytest.raises(ConfigError, match="level"):
        fit.predict(1e12, level="0.9")  # was: TypeError comparing str and int
