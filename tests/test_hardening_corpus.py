"""Hardening of fastsynth.corpus (issue 15): every record is accounted for by every reader,
nothing half-written is taken as finished, and writes fail cleanly under faults.

Each test here failed before its fix (the defect it guards is named in its docstring).
Fault injection runs real child processes: a file-size limit (``RLIMIT_FSIZE``: the write
fails with EFBIG, as on a full disk), an unprivileged user for permission errors (the
tests run as root in CI, which ignores file modes), and SIGKILL at a random moment."""
from __future__ import annotations

import gzip
import json
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import zstandard

from fastsynth.corpus import compressed as compressed_mod
from fastsynth.corpus import read, read_batches, write
from fastsynth.errors import ConfigError, DependencyError, InputError

NOBODY = 65534


def _lines(objs) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


def _strict_json(line: str):
    def no(c):
        raise ValueError(f"{c} is not JSON")
    return json.loads(line, parse_constant=no)


@pytest.fixture
def shared_dir():
    """A folder an unprivileged child can use (pytest's tmp_path is root-only)."""
    d = Path(tempfile.mkdtemp(prefix="fastsynth-hardening-"))
    d.chmod(0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _child(code: str, *, fsize: int | None = None, unprivileged: bool = False,
           timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python, optionally under a file-size limit or as nobody.

    The unprivileged child imports fastsynth first and then drops to ``nobody``: the
    interpreter and the checkout may not be readable by that user."""
    prelude = "import json, os\nimport fastsynth.corpus, fastsynth.errors\n"
    if unprivileged and os.geteuid() == 0:
        prelude += f"os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})\n"

    def setup():
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout, preexec_fn=setup)


# ---------------------------------------------------------------- readers: JSONL

def test_deeply_nested_line_is_a_reject_not_a_recursion_error(tmp_path):
    """Was: a 2 KB line nested 1000 deep raised RecursionError past on_error='skip'."""
    deep = b'{"text": "x", "n": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    path = tmp_path / "deep.jsonl"
    path.write_bytes(_lines([{"text": "before"}]) + deep + b"\n" + _lines([{"text": "after"}]))
    rej: list[dict] = []
    reader = read(path, on_error="skip", rejects=rej)
    assert [r["text"] for r in reader] == ["before", "after"]
    assert [(e["line"], e["reason"]) for e in rej] == [(2, "malformed_json")]
    assert "nested too deeply" in rej[0]["detail"]
    assert reader.stats.read == 3 == reader.stats.yielded + reader.stats.rejected
    with pytest.raises(InputError, match=r"deep\.jsonl:2: .*nested too deeply"):
        list(read(path))


def test_nan_and_infinity_are_not_json(tmp_path):
    """Was: NaN/Infinity were read as floats and written back as bare NaN (invalid JSON)."""
    path = tmp_path / "nan.jsonl"
    path.write_bytes(b'{"text": "a", "s": NaN}\n{"text": "b", "s": -Infinity}\n{"text": "c"}\n')
    rej: list[dict] = []
    assert [r["text"] for r in read(path, on_error="skip", rejects=rej)] == ["c"]
    assert [(e["line"], e["reason"]) for e in rej] == [(1, "malformed_json"), (2, "malformed_json")]


def test_numbers_past_the_float_range_are_not_read_as_infinity(tmp_path):
    """Python's json reads 1e400 as inf; the reader rejects it (any spelling, any depth)."""
    path = tmp_path / "big.jsonl"
    path.write_bytes(b'{"text": "a", "x": 1e400}\n{"text": "b", "m": {"y": [-2E+999]}}\n'
                     b'{"text": "c", "x": 1.5e308, "n": ' + b"7" * 400 + b'}\n'
                     b'{"text": "d", "x": ' + b"9" * 400 + b'.5}\n{"text": "e", "x": 0.1}\n')
    rej: list[dict] = []
    recs = list(read(path, on_error="skip", rejects=rej))
    assert [r["text"] for r in recs] == ["c", "e"]
    assert recs[0]["x"] == 1.5e308 and recs[0]["n"] == int("7" * 400) and recs[1]["x"] == 0.1
    assert [(e["line"], e["reason"]) for e in rej] == [(1, "malformed_json"), (2, "malformed_json"),
                                                       (4, "malformed_json")]
    assert "past the float range" in rej[0]["detail"]


def test_lone_surrogate_in_any_field_is_rejected_by_the_reader(tmp_path):
    """Was: a lone surrogate in a non-text field passed the reader and crashed the writer
    after all the work."""
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"text": "ok", "meta": {"tag": "\\ud800"}}\n'
                     b'{"text": "ok2", "\\udfff": 1}\n'
                     b'{"text": "pair \\ud83d\\ude42", "meta": "\\ud83d\\ude42"}\n')
    rej: list[dict] = []
    recs = list(read(path, on_error="skip", rejects=rej))
    assert [r["text"] for r in recs] == ["pair \U0001F642"]
    assert [(e["line"], e["reason"]) for e in rej] == [(1, "invalid_utf8"), (2, "invalid_utf8")]
    # What the reader yields, every writer can write.
    for suffix in ("jsonl", "parquet"):
        assert write(recs, tmp_path / f"out.{suffix}") == 1


# ---------------------------------------------------------------- readers: gzip members

def _member_with_bad_crc(data: bytes) -> bytes:
    """A gzip member whose deflate data decodes fine but whose CRC-32 is wrong."""
    z = bytearray(gzip.compress(data, mtime=0))
    crc = struct.unpack_from("<I", z, len(z) - 8)[0]
    struct.pack_into("<I", z, len(z) - 8, crc ^ 0x1)
    return bytes(z)


def test_gzip_member_failing_its_crc_rejects_its_records(tmp_path):
    """Was: records decoded from a member before its CRC check failed were yielded as good."""
    good = [{"text": f"good {i}"} for i in range(50)]
    bad = [{"text": f"unvouched {i}"} for i in range(30)]
    path = tmp_path / "crc.jsonl.gz"
    path.write_bytes(gzip.compress(_lines(good)) + _member_with_bad_crc(_lines(bad)))
    nxt = tmp_path / "next.jsonl"
    nxt.write_bytes(_lines([{"text": "next file"}]))
    rej: list[dict] = []
    reader = read([path, nxt], on_error="skip", rejects=rej)
    texts = [r["text"] for r in reader]
    assert texts == [o["text"] for o in good] + ["next file"]
    assert len(rej) == 1 and rej[0]["reason"] == "corrupt_stream" and rej[0]["line"] == 51
    assert "after line 50" in rej[0]["detail"] and "incorrect data check" in rej[0]["detail"]
    assert reader.stats.read == reader.stats.yielded + reader.stats.rejected
    # A single damaged member: nothing from it is taken as good; raise mode names the file.
    single = tmp_path / "single.jsonl.gz"
    single.write_bytes(_member_with_bad_crc(_lines(bad)))
    assert list(read(single, on_error="skip")) == []
    with pytest.raises(InputError, match=r"single\.jsonl\.gz:1: .*\[corrupt_stream\]"):
        list(read(single))
    # read_batches agrees.
    rows = sum(b.num_rows for b in read_batches([path, nxt], on_error="skip"))
    assert rows == len(good) + 1


def test_gzip_member_larger_than_the_buffer_is_checked_then_decoded(tmp_path, monkeypatch):
    """Members past MEMBER_BUFFER take the check-then-decode path (bounded memory)."""
    monkeypatch.setattr(compressed_mod, "MEMBER_BUFFER", 4096)
    objs = [{"text": f"line {i} " + "x" * (i % 97)} for i in range(3000)]
    path = tmp_path / "big.jsonl.gz"
    # Three members: big, small, big; one line spans the first two members.
    data = _lines(objs)
    cut1, cut2 = len(data) // 3 + 7, len(data) // 3 + 200
    path.write_bytes(gzip.compress(data[:cut1]) + gzip.compress(data[cut1:cut2])
                     + gzip.compress(data[cut2:]))
    assert [r["text"] for r in read(path)] == [o["text"] for o in objs]
    damaged = tmp_path / "damaged.jsonl.gz"
    damaged.write_bytes(gzip.compress(data[:cut1]) + _member_with_bad_crc(data[cut1:]))
    rej: list[dict] = []
    got = list(read(damaged, on_error="skip", rejects=rej))
    n_first = data[:cut1].count(b"\n")
    assert [r["text"] for r in got] == [o["text"] for o in objs[:n_first]]
    assert len(rej) == 1 and rej[0]["line"] == n_first + 1


# ---------------------------------------------------------------- readers: zstd frames

def _frame(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)


def _with_bad_checksum(frame: bytes) -> bytes:
    """A zstd frame whose blocks decode fine but whose XXH64 content checksum is wrong."""
    return frame[:-4] + bytes([frame[-4] ^ 0x1]) + frame[-3:]


def test_zstd_frame_failing_its_checksum_rejects_its_records(tmp_path):
    """Was: pyarrow's zstd stream yielded a frame's lines before its checksum failed."""
    good = [{"text": f"good {i}"} for i in range(50)]
    bad = [{"text": f"unvouched {i}"} for i in range(30)]
    path = tmp_path / "sum.jsonl.zst"
    path.write_bytes(_frame(_lines(good)) + _with_bad_checksum(_frame(_lines(bad))))
    nxt = tmp_path / "next.jsonl"
    nxt.write_bytes(_lines([{"text": "next file"}]))
    rej: list[dict] = []
    reader = read([path, nxt], on_error="skip", rejects=rej)
    assert [r["text"] for r in reader] == [o["text"] for o in good] + ["next file"]
    assert len(rej) == 1 and rej[0]["reason"] == "corrupt_stream" and rej[0]["line"] == 51
    assert "zstd frame" in rej[0]["detail"] and "checksum" in rej[0]["detail"]
    assert reader.stats.read == reader.stats.yielded + reader.stats.rejected
    single = tmp_path / "single.jsonl.zst"
    single.write_bytes(_with_bad_checksum(_frame(_lines(bad))))
    assert list(read(single, on_error="skip")) == []
    with pytest.raises(InputError, match=r"single\.jsonl\.zst:1: .*\[corrupt_stream\]"):
        list(read(single))
    assert sum(b.num_rows for b in read_batches([path, nxt], on_error="skip")) == len(good) + 1


def test_zstd_damaged_middle_frame_keeps_the_frames_before_it(tmp_path):
    """Flipped bytes inside a frame's compressed blocks: the frames before it are kept, its
    lines and the rest of the file are one reject, read == yielded + rejected."""
    parts = [[{"text": f"frame {f} line {i} " + "abc" * (i % 5)} for i in range(40)]
             for f in range(3)]
    frames = [_frame(_lines(p)) for p in parts]
    middle = bytearray(frames[1])
    for at in range(len(middle) // 3, len(middle) // 3 + 8):
        middle[at] ^= 0x5A
    path = tmp_path / "mid.jsonl.zst"
    path.write_bytes(frames[0] + bytes(middle) + frames[2])
    rej: list[dict] = []
    reader = read(path, on_error="skip", rejects=rej)
    assert [r["text"] for r in reader] == [o["text"] for o in parts[0]]
    assert [(e["line"], e["reason"]) for e in rej] == [(41, "corrupt_stream")]
    assert reader.stats.read == 41 == reader.stats.yielded + reader.stats.rejected
    # Garbage after the last frame: its frames are kept, the garbage is one reject.
    tail = tmp_path / "tail.jsonl.zst"
    tail.write_bytes(frames[0] + b"not zstd")
    rej = []
    assert len(list(read(tail, on_error="skip", rejects=rej))) == 40
    assert rej[0]["reason"] == "corrupt_stream" and "not a zstd frame" in rej[0]["detail"]


def test_zstd_frames_larger_than_the_buffer_and_lines_across_frames(tmp_path, monkeypatch):
    """Frames past MEMBER_BUFFER are checked then decoded; a line split between frames is
    one record; skippable frames and frames without a checksum are read."""
    monkeypatch.setattr(compressed_mod, "MEMBER_BUFFER", 4096)
    objs = [{"text": f"line {i} " + "x" * (i % 97)} for i in range(3000)]
    data = _lines(objs)
    cut1, cut2 = len(data) // 3 + 7, len(data) // 3 + 200
    skippable = struct.pack("<II", 0x184D2A53, 5) + b"12345"
    plain = zstandard.ZstdCompressor(write_checksum=False)
    path = tmp_path / "big.jsonl.zst"
    path.write_bytes(_frame(data[:cut1]) + skippable + plain.compress(data[cut1:cut2])
                     + _frame(data[cut2:]))
    assert [r["text"] for r in read(path)] == [o["text"] for o in objs]
    damaged = tmp_path / "damaged.jsonl.zst"
    damaged.write_bytes(_frame(data[:cut1]) + _with_bad_checksum(_frame(data[cut1:])))
    rej: list[dict] = []
    got = list(read(damaged, on_error="skip", rejects=rej))
    n_first = data[:cut1].count(b"\n")
    assert [r["text"] for r in got] == [o["text"] for o in objs[:n_first]]
    assert len(rej) == 1 and rej[0]["line"] == n_first + 1


def test_zstd_without_the_package_is_one_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "a.jsonl.zst"
    path.write_bytes(_frame(_lines([{"text": "a"}])))
    plain = tmp_path / "b.jsonl"
    plain.write_bytes(_lines([{"text": "b"}]))
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import zstandard -> ImportError
    for on_error in ("raise", "skip"):
        with pytest.raises(DependencyError, match=r"reading \.zst files needs the 'zstandard' "
                                                  r"package: pip install 'fastsynth\[zstd\]'"):
            read([plain, path], on_error=on_error)
    assert [r["text"] for r in read(plain)] == ["b"]


# ---------------------------------------------------------------- readers: Parquet

def _invalid_strings(values: list[bytes]) -> pa.Array:
    """A string array holding the given bytes unchecked (as a foreign writer could)."""
    b = pa.array(values, pa.binary())
    return pa.Array.from_buffers(pa.string(), len(values), b.buffers())


def test_parquet_invalid_utf8_is_rejected_not_yielded(tmp_path):
    """Was: invalid UTF-8 in a Parquet string column was scored silently (read_batches) or
    raised a raw UnicodeDecodeError (read)."""
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({
        "text": _invalid_strings([b"ok", b"caf\xe9", b"\xed\xa0\x80", b"fine", b"also"]),
        "meta": _invalid_strings([b"a", b"b", b"c", b"\xff", b"e"]),
    }), path)
    rej: list[dict] = []
    reader = read(path, on_error="skip", rejects=rej)
    assert [r["text"] for r in reader] == ["ok", "also"]
    assert [(e["row"], e["reason"]) for e in rej] == [(1, "invalid_utf8"), (2, "invalid_utf8"),
                                                       (3, "invalid_utf8")]
    assert "'meta'" in rej[2]["detail"] and "'text'" in rej[0]["detail"]
    assert reader.stats.read == 5 == reader.stats.yielded + reader.stats.rejected
    # read_batches reads only text and id: the bad meta row is fine there.
    brej: list[dict] = []
    table = pa.Table.from_batches(list(read_batches(path, on_error="skip", rejects=brej)))
    assert table.column("text").to_pylist() == ["ok", "fine", "also"]
    table.validate(full=True)
    assert [e["row"] for e in brej] == [1, 2]
    with pytest.raises(InputError, match=r"bad\.parquet row 1: .*UTF-8"):
        list(read(path))


# ---------------------------------------------------------------- sources

def test_empty_directory_or_glob_is_an_error_naming_it(tmp_path):
    """Was: an empty directory source read as '0 documents' without a word."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.csv").write_text("not a corpus format")
    with pytest.raises(ConfigError, match=r"empty.*no file of a supported type"):
        read(empty)
    with pytest.raises(ConfigError, match="no file of a supported type"):
        read(str(empty / "*.csv"))


def test_unreadable_subdirectory_is_counted_not_dropped(shared_dir):
    """Was: os.walk skipped folders it could not list; their files vanished uncounted.
    Run as an unprivileged user (root reads any folder)."""
    root = shared_dir / "corpus"
    (root / "ok").mkdir(parents=True)
    (root / "locked").mkdir()
    (root / "ok" / "a.jsonl").write_bytes(_lines([{"text": "a"}]))
    (root / "locked" / "b.jsonl").write_bytes(_lines([{"text": "b"}]))
    for p in (root, root / "ok"):
        p.chmod(0o755)
    (root / "ok" / "a.jsonl").chmod(0o644)
    (root / "locked").chmod(0o000)
    locked_top = shared_dir / "locked-top"
    locked_top.mkdir(mode=0o000)
    locked_top.chmod(0o000)
    res = _child(f"""
        import json
        from fastsynth.corpus import read
        from fastsynth.errors import InputError
        rej = []
        r = read({str(root)!r}, on_error="skip", rejects=rej)
        out = [x["text"] for x in r]
        print(json.dumps({{"out": out, "rej": rej, "stats": r.stats.as_dict()}}))
        for src in ({str(root)!r}, {str(locked_top)!r}):
            try:
                list(read(src))
            except InputError as e:
                print("RAISED", e)
    """, unprivileged=True)
    assert res.returncode == 0, res.stderr
    first, *raised = res.stdout.strip().splitlines()
    got = json.loads(first)
    assert got["out"] == ["a"]
    assert [(e["reason"], Path(e["source"]).name) for e in got["rej"]] == [("unreadable_file", "locked")]
    assert "cannot list directory" in got["rej"][0]["detail"]
    assert got["stats"]["read"] == 2 == got["stats"]["yielded"] + got["stats"]["rejected"]
    assert len(raised) == 2 and "locked" in raised[0] and "locked-top" in raised[1]


# ---------------------------------------------------------------- writer

def test_write_encodes_non_finite_floats_as_null(tmp_path):
    """Was: corpus.write emitted bare NaN into JSONL (invalid JSON)."""
    import numpy as np
    recs = [{"id": "a", "text": "x", "score": float("nan"),
             "nested": {"v": [float("inf"), 1.5, -float("inf")]}, "np": np.float64("nan")},
            {"id": "b", "text": "y", "score": 0.25}]
    for suffix in ("jsonl", "jsonl.gz"):
        out = tmp_path / f"o.{suffix}"
        assert write(recs, out) == 2
        raw = gzip.decompress(out.read_bytes()) if suffix.endswith("gz") else out.read_bytes()
        rows = [_strict_json(line) for line in raw.decode().splitlines()]
        assert rows[0] == {"id": "a", "text": "x", "score": None,
                           "nested": {"v": [None, 1.5, None]}, "np": None}
        assert rows[1]["score"] == 0.25


def test_write_mixed_types_names_field_and_record(tmp_path):
    """Was: mixed-type extra fields crashed write(..., X.parquet) with ArrowInvalid."""
    recs = [{"id": f"r{i}", "text": "t", "lang": "en", "n": i} for i in range(5)]
    recs[3]["n"] = "three"
    out = tmp_path / "o.parquet"
    with pytest.raises(InputError, match=r"field 'n' has mixed types: record 3 holds string"):
        write(recs, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    # The same records are fine as JSONL (no column types there).
    assert write(recs, tmp_path / "o.jsonl") == 5


def test_write_unencodable_value_names_record_and_field(tmp_path):
    recs = [{"id": "a", "text": "x"}, {"id": "b", "text": "y", "tag": "\ud800"}]
    for suffix in ("jsonl", "jsonl.zst", "parquet"):
        with pytest.raises(InputError, match=r"field 'tag'") as info:
            write(recs, tmp_path / f"o.{suffix}")
        assert "record 1" in str(info.value)
    with pytest.raises(InputError, match=r"record 0 \(id 'a'\), field 'blob'"):
        write([{"id": "a", "text": "x", "blob": b"\x00"}], tmp_path / "o.jsonl")
    with pytest.raises(InputError, match=r"record 1: field name 7 is a int"):
        write([{"text": "x"}, {"text": "y", 7: "seven"}], tmp_path / "o.parquet")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- fault injection

def _records_code(n: int, pause: float = 0.0) -> str:
    return f"""
        import time
        def records():
            for i in range({n}):
                if {pause} and i % 200 == 0:
                    time.sleep({pause})
                yield {{"id": f"r{{i}}", "text": "text number " + str(i) * 20}}
    """


def test_disk_full_leaves_old_output_and_no_temp(shared_dir):
    """A write that runs out of space (RLIMIT_FSIZE -> EFBIG, like ENOSPC) raises OSError,
    removes its temporary file and leaves the previous output untouched (each format, in
    one child process)."""
    outs = [shared_dir / f"out.{suffix}" for suffix in ("jsonl", "jsonl.gz", "parquet")]
    before = []
    for out in outs:
        write([{"id": "old", "text": "previous run"}], out)
        before.append(out.read_bytes())
    res = _child(_records_code(20000) + f"""
        from fastsynth.corpus import write
        for out in {[str(o) for o in outs]!r}:
            try:
                write(records(), out, chunk_rows=500)
                print("no error")
            except OSError as e:
                print("OSError", e.errno)
    """, fsize=64 * 1024)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:3] == ["OSError 27"] * 3, res.stdout + res.stderr  # EFBIG
    assert [o.read_bytes() for o in outs] == before
    assert sorted(p.name for p in shared_dir.iterdir()) == sorted(o.name for o in outs)


def test_read_only_folder_is_a_clean_oserror(shared_dir):
    """Writing into a folder the user may not write: PermissionError naming the file,
    nothing created (the CLI prints it as one line)."""
    ro = shared_dir / "ro"
    ro.mkdir(mode=0o555)
    ro.chmod(0o555)
    res = _child(f"""
        from fastsynth.corpus import write
        try:
            write([{{"text": "a"}}], {str(ro / 'o.jsonl')!r})
        except PermissionError as e:
            print("PermissionError", e.filename)
    """, unprivileged=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("PermissionError") and "o.jsonl" in res.stdout
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("suffix", ["jsonl.gz", "parquet"])
def test_sigkill_mid_write_never_leaves_a_half_file(shared_dir, suffix):
    """SIGKILL at a random moment during write: the target is the old file or the whole
    new one, never part of it; the killed writer's temp file is swept by the next write."""
    rng = random.Random(15)
    out = shared_dir / f"out.{suffix}"
    write([{"id": "old", "text": "previous run"}], out)
    # The child announces itself once two chunks are in the writer's hands (its temp file
    # exists); the rest takes >= 0.5 s (18 pauses of 30 ms), and the kill lands 0-0.2 s in.
    code = textwrap.dedent(f"""
        import time
        from fastsynth.corpus import write
        def records():
            for i in range(4000):
                if i == 400:
                    print("writing", flush=True)
                if i % 200 == 0:
                    time.sleep(0.03)
                yield {{"id": f"r{{i}}", "text": "text number " + str(i) * 20}}
        write(records(), {str(out)!r}, chunk_rows=200)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(rng.uniform(0.0, 0.2))
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert [r["id"] for r in read(out)] == ["old"]  # the old file, whole
    leftovers = [p.name for p in shared_dir.iterdir() if p.name != out.name]
    assert leftovers == [f".{out.name}.tmp-{proc.pid}"]  # what a killed writer leaves
    assert write([{"id": "new", "text": "rerun"}], out) == 1
    assert [p.name for p in shared_dir.iterdir()] == [out.name]
    assert [r["id"] for r in read(out)] == ["new"]


def test_records_in_equal_out_plus_rejects_through_read_and_write(tmp_path):
    """A mixed, partly damaged corpus read in skip mode and written out: every input unit
    is in the output or in the rejects file, with counts that add up."""
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.jsonl").write_bytes(
        _lines([{"text": "one"}, {"text": "two", "x": 1}]) + b"{bad\n"
        + b'{"text": "s", "m": "\\udc00"}\n' + b'{"text": "n", "v": NaN}\n')
    (root / "b.jsonl.gz").write_bytes(gzip.compress(_lines([{"text": "g1"}]))
                                      + _member_with_bad_crc(_lines([{"text": "g2"}])))
    pq.write_table(pa.table({"text": _invalid_strings([b"p0", b"\xff", b"p2"])}), root / "c.parquet")
    rejects = tmp_path / "rejects.jsonl"
    reader = read(root, on_error="skip", rejects=rejects)
    n_out = write(reader, tmp_path / "out.parquet")
    st = reader.stats
    rej = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert n_out == st.yielded == 5 and len(rej) == st.rejected == 5
    assert st.read == n_out + len(rej)
    assert sorted(e["reason"] for e in rej) == ["corrupt_stream", "invalid_utf8", "invalid_utf8",
                                                 "malformed_json", "malformed_json"]


def test_rejects_temp_file_of_a_killed_reader_is_swept(tmp_path):
    """A reader killed before close leaves its rejects temp file; the next reader writing
    the same rejects path removes it (its pid is gone) and leaves a live one alone."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"text": "a"}\n{bad\n{"text": "c"}\n{"text": "d"}\n')
    rejects = tmp_path / "rejects.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal
        from fastsynth.corpus import read
        r = read({str(src)!r}, on_error="skip", rejects={str(rejects)!r})
        next(r), next(r)  # "a", then the bad line's reject (temp file open), then "c"
        os.kill(os.getpid(), signal.SIGKILL)
    """)])
    assert proc.wait() == -signal.SIGKILL
    dead = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert dead == [f".rejects.jsonl.tmp-{proc.pid}"] and not rejects.exists()
    live = tmp_path / f".rejects.jsonl.tmp-{os.getppid()}"
    live.write_text("")
    with read(src, on_error="skip", rejects=rejects) as r:
        assert [x["text"] for x in r] == ["a", "c", "d"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "in.jsonl",
                                                                 "rejects.jsonl"])
    assert len(rejects.read_text().splitlines()) == 1


def test_arguments_that_would_fail_after_the_work_fail_first(tmp_path):
    """An empty source list read as '0 documents'; a directory as output failed at the final
    rename; a rejects path in a missing folder failed at the first bad record."""
    with pytest.raises(ConfigError, match="empty list"):
        read([])
    (tmp_path / "out.jsonl").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        write(iter([{"text": "a"}]), tmp_path / "out.jsonl")
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"text": "a"}\n')
    with pytest.raises(ConfigError, match="rejects"):
        read(src, on_error="skip", rejects=tmp_path / "no" / "such" / "rejects.jsonl")


def test_sparse_field_gets_its_type_from_a_later_chunk(tmp_path):
    """Was: a field null in every record of the first chunk fixed the Parquet column as
    'null', and the first later value failed the write after the work."""
    recs = [{"id": f"r{i}", "text": "t", "label": None} for i in range(10)]
    recs += [{"id": "r10", "text": "t", "label": "spam", "extra": 3}]
    out = tmp_path / "o.parquet"
    assert write(recs, out, chunk_rows=4) == 11
    table = pq.read_table(out)
    assert table.schema.field("label").type == pa.string()
    assert table.column("label").to_pylist() == [None] * 10 + ["spam"]
    assert table.column("extra").to_pylist() == [None] * 10 + [3]
    # Types that disagree across the held chunks are still named.
    mixed = [{"text": "t", "label": None, "note": None} for _ in range(12)]
    mixed[5]["label"], mixed[9]["label"] = 5, "x"
    with pytest.raises(InputError, match=r"field 'label' has mixed types: records from 8 on "
                                         r"hold string where earlier records hold int64"):
        write(mixed, out, chunk_rows=4)
    assert pq.read_table(out).num_rows == 11  # the earlier output is untouched


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(0, 40), min_size=1, max_size=4), pos=st.floats(0, 1),
       flip=st.integers(1, 255), cut=st.booleans(), codec=st.sampled_from(["gz", "zst"]))
def test_damaged_compressed_file_never_yields_a_wrong_record(tmp_path, sizes, pos, flip, cut,
                                                             codec):
    """Any one damaged byte (or a cut) in a multi-member gzip or multi-frame zstd file
    (checksums on): every yielded record is the original line at that position, the
    yielded lines are a prefix of the file, and read == yielded + rejected."""
    objs = [{"text": f"member {m} line {i} " + "abc" * (i % 7)}
            for m, k in enumerate(sizes) for i in range(k)]
    data, start = b"", 0
    for k in sizes:
        part = _lines(objs[start:start + k])
        data += gzip.compress(part, mtime=0) if codec == "gz" else _frame(part)
        start += k
    at = min(int(pos * len(data)), len(data) - 1)
    damaged = data[:at] if cut else data[:at] + bytes([data[at] ^ flip]) + data[at + 1:]
    path = tmp_path / f"h.jsonl.{codec}"
    path.write_bytes(damaged)
    reader = read(path, on_error="skip")
    got = [r["text"] for r in reader]
    assert got == [o["text"] for o in objs[:len(got)]]
    st_ = reader.stats
    assert st_.read == st_.yielded + st_.rejected and st_.rejected <= 1
