"""The manifest-backed part store both run directories build on (fastsynth.partstore)."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest

from fastsynth import __version__
from fastsynth.atomic import write_parquet
from fastsynth.errors import ConfigError, InputError
from fastsynth.partstore import MANIFEST, PartStore

GROUP = ("stages", "s", "phases", "p")
CONFIG = {"a": 1, "b": {"x": 2, "y": [1, 2]}}


def _files(root):
    return lambda part: [root / "data" / f"{part}.parquet"]


def _open(root, config=CONFIG, **kw):
    return PartStore(root, config, fresh={"stages": {}}, **kw)


def _finish(store, part, rows):
    write_parquet(store.root / "data" / f"{part}.parquet", pa.table({"v": list(range(rows))}))
    store.record(GROUP, part, {"n": rows})


def test_changed_config_is_refused_naming_the_differing_keys(tmp_path):
    _finish(_open(tmp_path / "r"), "p0", 3)
    changed = {"a": 1, "b": {"x": 3, "y": [1, 2]}, "c": True}
    with pytest.raises(ConfigError, match=r"differs in: b\.x, c\)") as e:
        _open(tmp_path / "r", changed)
    assert "a" not in str(e.value).split("differs in:")[1].split(")")[0].split(", ")
    again = _open(tmp_path / "r")  # the same config resumes with its parts
    assert again.listed(GROUP) == {"p0": {"n": 3}}
    fresh = _open(tmp_path / "r", changed, overwrite=True)
    assert fresh.listed(GROUP) == {} and fresh.manifest["config"] == changed


def test_a_part_written_but_not_listed_is_redone(tmp_path):
    store = _open(tmp_path / "r")
    _finish(store, "p0", 2)
    # killed between writing the part file and listing it: the file is there, unlisted
    write_parquet(store.root / "data" / "p1.parquet", pa.table({"v": [7]}))
    # and killed mid-write of another: only its temp sibling is left
    (store.root / "data" / ".p2.parquet.tmp-12345").write_bytes(b"half")
    again = _open(tmp_path / "r")
    assert again.is_listed(GROUP, "p0") and not again.is_listed(GROUP, "p1")
    assert not (store.root / "data" / ".p2.parquet.tmp-12345").exists()
    assert list(again.listed(GROUP)) == ["p0"]
    _finish(again, "p1", 5)  # the redo replaces the unlisted file and lists it
    on_disk = json.loads((tmp_path / "r" / MANIFEST).read_text())
    assert on_disk["stages"]["s"]["phases"]["p"] == {"p0": {"n": 2}, "p1": {"n": 5}}


def test_a_damaged_listed_part_is_named_or_redone(tmp_path):
    store = _open(tmp_path / "r")
    for i in range(3):
        _finish(store, f"p{i}", i + 1)
    bad = store.root / "data" / "p1.parquet"
    bad.write_bytes(bad.read_bytes()[:-20])  # footer cut off
    again = _open(tmp_path / "r")
    with pytest.raises(InputError, match=r"finished part 'p1' is damaged .*; redo it") as e:
        again.check_damaged(GROUP, _files(again.root), redo=False, hint="redo it")
    assert str(bad) in str(e.value)
    assert again.check_damaged(GROUP, _files(again.root), redo=True, hint="") == ["p1"]
    assert not bad.exists()
    reopened = _open(tmp_path / "r")
    assert list(reopened.listed(GROUP)) == ["p0", "p2"]
    assert reopened.check_damaged(GROUP, _files(reopened.root), redo=False, hint="") == []


def test_another_fastsynth_version_or_format_is_refused(tmp_path):
    store = _open(tmp_path / "r", format=3)
    assert store.manifest["format"] == 3 and store.manifest["versions"]["fastsynth"] == __version__
    m = json.loads((tmp_path / "r" / MANIFEST).read_text())
    m["versions"]["fastsynth"] = "0.0.1"
    (tmp_path / "r" / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ConfigError, match=r"written by fastsynth 0\.0\.1 \(run format 3\); this is "
                                          rf"fastsynth {__version__}"):
        _open(tmp_path / "r", format=3)
    _open(tmp_path / "r2", format=3)
    with pytest.raises(ConfigError, match=r"run format 3\).*\(format 4\)"):
        _open(tmp_path / "r2", format=4)
    # without a format (the synthesis directory's case) no versions are written or checked
    assert "versions" not in _open(tmp_path / "r3").manifest


def test_unreadable_manifest_or_a_file_in_the_way(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / MANIFEST).write_text("{not json")
    with pytest.raises(ConfigError, match=r"manifest\.json: unreadable manifest .*; use a new"):
        _open(tmp_path / "r")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match=r"output .*f exists and is not a directory"):
        _open(tmp_path / "f", what="output")
