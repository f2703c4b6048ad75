"""fastsynth.atomic: a target is the old file or the whole new one, never a part."""
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastsynth.atomic import atomic_path, atomic_write_text, sweep_temps, temp_path, write_parquet


def test_failed_write_leaves_target_and_no_temp(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_parquet_roundtrip_and_sweep(tmp_path):
    t = pa.table({"x": [1, 2, 3]})
    write_parquet(tmp_path / "sub" / "p.parquet", t)
    assert pq.read_table(tmp_path / "sub" / "p.parquet").equals(t)
    leftover = temp_path(tmp_path / "sub" / "q.parquet")
    leftover.write_bytes(b"partial")
    assert sweep_temps(tmp_path) == [leftover]
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["p.parquet"]


def test_file_size_limit_fails_loudly_and_keeps_old(tmp_path):
    """A full disk (here: RLIMIT_FSIZE in a child) raises; the target keeps its old bytes."""
    target = tmp_path / "big.txt"
    atomic_write_text(target, "old")
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
            "from fastsynth.atomic import atomic_write_text\n"
            f"atomic_write_text({str(target)!r}, 'x' * 100000)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode != 0 and "File too large" in r.stderr
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["big.txt"]
