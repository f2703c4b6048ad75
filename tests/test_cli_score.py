"""`fastsynth score` end to end, through the installed console script."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fastsynth.cli import COMMANDS

PROSE = ("The committee met on Tuesday to review the budget for the coming year, and the members "
         "discussed how the new research programme would be funded and which of the planned "
         "projects should be postponed until the spring. ")


def fastsynth(*args, cwd=None):
    exe = shutil.which("fastsynth", path=os.path.dirname(sys.executable)) or shutil.which("fastsynth")
    cmd = [exe] if exe else [sys.executable, "-m", "fastsynth.cli"]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=300)


def write_corpus(path: Path) -> int:
    """A JSONL file with 6 good records, 3 bad lines and one blank line; returns the
    number of records (non-blank lines)."""
    good = [{"id": f"doc{i}", "text": (PROSE * (3 + i)) + f" Item {i}."} for i in range(5)]
    good.append({"id": "junk", "text": "buy now " * 200})
    lines = [json.dumps(r) for r in good]
    lines.insert(2, '{"id": "broken", "text": ')          # malformed JSON
    lines.insert(4, json.dumps({"id": "notext"}))          # missing text field
    lines.insert(6, json.dumps({"id": "num", "text": 42}))  # non-string text
    lines.insert(7, "")
    path.write_text("\n".join(lines) + "\n")
    return len(good) + 3


def test_every_command_has_help():
    out = fastsynth("--help")
    assert out.returncode == 0 and "score" in out.stdout
    for name in COMMANDS:
        res = fastsynth(name, "--help")
        assert res.returncode == 0, (name, res.stderr)
        assert "usage: fastsynth " + name in res.stdout


def test_skip_mode_accounts_for_every_record(tmp_path):
    src = tmp_path / "corpus.jsonl"
    n_records = write_corpus(src)
    out = tmp_path / "out"
    res = fastsynth("score", src, "-o", out, "--on-error", "skip", "--write-kept", "--gzip-band", "0.0", "0.9")
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    c = summary["counts"]
    assert c["input_records"] == n_records
    assert c["rejected_at_input"] == 3 and c["scored"] == 6
    assert c["kept"] + c["rejected_by_filter"] == c["scored"]
    assert sum(summary["rejected_by_first_rule"].values()) == c["rejected_by_filter"]
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    by_reason = c["rejected_at_input_by_reason"]
    assert sorted(r["reason"] for r in rejects) == sorted(k for k, v in by_reason.items() for _ in range(v))
    assert {r["line"] for r in rejects} == {3, 5, 7}
    scores = pq.read_table(out / "scores.parquet").to_pydict()
    assert scores["id"] == [f"doc{i}" for i in range(5)] + ["junk"]
    assert scores["keep"][-1] is False and "top_2gram" in scores["reasons"][-1]
    kept = pq.read_table(out / "kept.parquet").to_pydict()
    assert kept["id"] == [i for i, k in zip(scores["id"], scores["keep"]) if k]
    assert (out / "gzip_ratio_hist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "summary.md").read_text()
    assert "compressed/original" in md and "| 9 | 3 | 6 |" in md


def test_raise_mode_prints_one_line_naming_file_and_line(tmp_path):
    src = tmp_path / "corpus.jsonl"
    write_corpus(src)
    res = fastsynth("score", src, "-o", tmp_path / "out")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert "corpus.jsonl:3" in lines[0]
    assert not (tmp_path / "out" / "scores.parquet").exists()  # nothing half-written


@pytest.mark.parametrize("args, needle", [
    (["score", "/no/such/file.jsonl", "-o", "OUT"], "/no/such/file.jsonl"),
    (["score", "builtin:python-docs", "-o", "OUT", "--set", "no_such_rule=1"], "no_such_rule"),
    (["score", "builtin:python-docs", "-o", "OUT", "--level", "11"], "level"),
    (["score", "builtin:python-docs", "-o", "OUT", "--gzip-band", "0.7", "0.2"], "gzip_band"),
])
def test_bad_arguments_fail_with_one_line(tmp_path, args, needle):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    res = fastsynth(*args)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_builtin_corpus_end_to_end(tmp_path):
    res = fastsynth("score", "builtin:python-docs", "-o", tmp_path, "--no-histogram")
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    c = summary["counts"]
    assert c["scored"] > 100 and c["rejected_at_input"] == 0
    assert 0 < c["kept"] < c["scored"]
    p = summary["percentiles"]["gzip_ratio"]
    assert 0.2 < p["p50"] < 0.6
    assert pq.read_metadata(tmp_path / "scores.parquet").num_rows == c["scored"]


def _run_on_pty(args):
    """Run the CLI with stderr on a pseudo-terminal; returns (exit code, what it drew)."""
    import pty

    master, slave = pty.openpty()
    exe = shutil.which("fastsynth", path=os.path.dirname(sys.executable))
    proc = subprocess.Popen([exe, *map(str, args)], stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO once the child has closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


def test_progress_bar_only_on_a_terminal(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": PROSE * 4}) + "\n" for _ in range(50)))
    code, drawn = _run_on_pty(["score", src, "-o", tmp_path / "tty", "--no-histogram"])
    assert code == 0
    assert "score: " in drawn and "50doc" in drawn and "doc/s" in drawn
    res = fastsynth("score", src, "-o", tmp_path / "pipe", "--no-histogram")
    assert res.returncode == 0
    assert "doc/s" not in res.stderr and "%|" not in res.stderr  # quiet when not on a terminal


def test_parts_path_resumes_after_a_failed_part_and_equals_the_streaming_path(tmp_path, monkeypatch):
    """The path `--executor ray` takes (score as parts in OUT/.fastsynth-work), here on the
    local executor: a part failing midway leaves the work directory; the same call again
    runs only the parts not finished, then removes it; the files equal run_score's."""
    from dataclasses import replace

    from fastsynth.run.executor import LocalExecutor
    from fastsynth.run.rundir import RunError
    from fastsynth.run.score_job import run_score, run_score_parts
    from fastsynth.run.stages import score as stage

    src = tmp_path / "c.jsonl"
    n_records = write_corpus(src)
    ran: list[str] = []

    def flaky(config, part):
        ran.append(part.id)
        if part.id == "00002" and fail:
            raise OSError(5, "simulated I/O error")
        return stage.score_part(config, part)

    phase = replace(stage.STAGE.phases[0], fn=flaky)
    monkeypatch.setattr(stage, "STAGE", replace(stage.STAGE, phases=(phase,)))
    kw = dict(on_error="skip", write_kept=True, batch_size=2, histogram=False)
    fail = True
    with pytest.raises(RunError, match="part out/00002"):
        run_score_parts(src, tmp_path / "parts", LocalExecutor(show_progress=False), **kw)
    assert (tmp_path / "parts" / ".fastsynth-work" / "manifest.json").exists()
    assert ran == ["00000", "00001", "00002"] and not (tmp_path / "parts" / "summary.json").exists()
    fail, ran[:] = False, []
    summary = run_score_parts(src, tmp_path / "parts", LocalExecutor(show_progress=False), **kw)
    assert ran == ["00002"]  # 6 scored documents in parts of 2: 00000 and 00001 were kept
    assert not (tmp_path / "parts" / ".fastsynth-work").exists()
    run_score(src, tmp_path / "stream", **kw)
    for name in ("scores.parquet", "kept.parquet", "rejects.jsonl"):
        assert (tmp_path / "parts" / name).read_bytes() == (tmp_path / "stream" / name).read_bytes(), name
    assert summary["counts"]["input_records"] == n_records and summary["settings"]["executor"] == "local"
