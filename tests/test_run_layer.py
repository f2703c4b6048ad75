"""The run layer without a model: stage configs (flags, TOML, presets), the run directory's
refusals (other config, other version), bad input named in one line (unknown key or stage,
missing stage input, full disk or read-only output during a part), resume after a failed
part, and the accounting checks. Runs the corpus stages (ingest, score, dedup) for real."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fastsynth.cli import main
from fastsynth.errors import ConfigError, FastsynthError
from fastsynth.run.config import add_arguments, from_args
from fastsynth.run.pipeline import load_config, run
from fastsynth.run.rundir import PartResult, RunError
from fastsynth.run.stages.dedup import DedupConfig

CLI = [sys.executable, "-c", "import sys; from fastsynth.cli import main; sys.exit(main())"]
WORDS = ("the of and to in is that for it as with was on be by this are from or an at which "
         "python module function class object value list string file data type method").split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    import random

    rng = random.Random(3)
    root = tmp_path_factory.mktemp("corpus")
    docs = []
    for k in range(40):
        sents = [" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + "." for _ in range(20)]
        docs.append({"id": f"d{k}", "text": "\n".join(sents)})
    docs.append({"id": "dup", "text": docs[7]["text"]})
    lines = [json.dumps(d) for d in docs]
    lines.insert(3, "{bad json")
    (root / "c.jsonl").write_text("\n".join(lines) + "\n")
    return root / "c.jsonl"


def toml(tmp_path: Path, corpus: Path, extra: str = "") -> Path:
    p = tmp_path / "run.toml"
    p.write_text(f'[run]\nsource = "{corpus}"\nstages = ["ingest", "score", "dedup"]\n'
                 f'[ingest]\npart_docs = 8\n[score]\ngzip_band = [0.0, 1.0]\n{extra}')
    return p


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory):
    """One finished run of the corpus stages, shared: (config file, run dir, manifest,
    outputs). Tests that change a run work on a copy (:func:`copy_of`)."""
    root = tmp_path_factory.mktemp("finished")
    cfg = toml(root, corpus)
    rd = run(load_config(cfg), root / "r", report=False)
    return cfg, root / "r", json.loads(json.dumps(rd.manifest)), outputs(root / "r")


def copy_of(run_dir: Path, to: Path) -> Path:
    import shutil
    shutil.copytree(run_dir, to)
    return to


def outputs(run_dir: Path) -> dict:
    # as JSON text, so NaN (a score column of keep=first) compares equal to itself
    return {p.relative_to(run_dir).as_posix(): json.dumps(pq.read_table(p).to_pylist(), default=str)
            for p in sorted(run_dir.rglob("*.parquet"))}


def test_flags_come_from_the_config_dataclass():
    p = argparse.ArgumentParser()
    add_arguments(p, DedupConfig)
    text = p.format_help()
    assert "--threshold" in text and "Jaccard threshold in (0, 1] (default 0.8)" in text
    assert "--no-verify" in text and "--score-field" in text
    assert from_args(DedupConfig, p.parse_args([])) == DedupConfig()
    cfg = from_args(DedupConfig, p.parse_args(["--threshold", "0.5", "--no-verify", "--keep", "score",
                                               "--score-field", "gzip_ratio"]))
    assert (cfg.threshold, cfg.verify, cfg.keep, cfg.score_field) == (0.5, False, "score", "gzip_ratio")
    with pytest.raises(ConfigError, match="threshold"):
        from_args(DedupConfig, p.parse_args(["--threshold", "1.5"]))


@pytest.mark.parametrize("extra,needles", [
    ("[dedup]\nthresold = 0.5\n", ["[dedup]", "thresold"]),
    ("[dedupe]\nthreshold = 0.5\n", ["[dedupe]", "unknown stage"]),
    ("[dedup]\nthreshold = \"high\"\n", ["[dedup]", "threshold", "'high'"]),
    ("[dedup]\nnum_perm = 1\n", ["[dedup]", "dedup.num_perm"]),
    ("[synth]\nbackend = \"vllm\"\n", ["[synth]", "synth.model", "backend = vllm"]),
    ("[synth.engine_args]\ndtype = \"bfloat16\"\n", ["[synth]", "synth.engine_args", "backend = local"]),
    ("[synth]\nengine_args = 3\n", ["[synth]", "engine_args", "expected a table"]),
])
def test_bad_config_is_one_line_naming_key_and_file(tmp_path, corpus, capsys, extra, needles):
    cfg = toml(tmp_path, corpus, extra)
    assert main(["run", str(cfg), "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for n in needles:
        assert n in err[0]
    assert str(cfg) in err[0]
    assert not (tmp_path / "r").exists()


def test_vllm_engine_args_come_from_a_toml_table(tmp_path, corpus):
    """``[synth.engine_args]`` reaches the stage config as a table (what the actors pass to
    ``vllm.LLM``) and the manifest, where a resume compares it."""
    cfg = toml(tmp_path, corpus, '[synth]\nbackend = "vllm"\nmodel = "/models/smollm2-hf"\n'
                                 '[synth.engine_args]\ndtype = "bfloat16"\nmax_model_len = 4096\n'
                                 'gpu_memory_utilization = 0.45\n')
    cfg.write_text(cfg.read_text().replace('"dedup"]', '"dedup", "synth"]', 1))
    plan = load_config(cfg)
    synth_cfg = plan.configs["synth"]
    assert synth_cfg.engine_args == {"dtype": "bfloat16", "max_model_len": 4096, "gpu_memory_utilization": 0.45}
    assert plan.manifest_config()["synth"]["engine_args"] == synth_cfg.engine_args
    assert load_config(cfg) == plan  # equal configs: the Ray executor's pools are shared by equality
    from fastsynth.run.stages.synth import DriverGenerator

    # the driver's steps know the vLLM model's name without starting an engine
    assert DriverGenerator(synth_cfg).model_name == "/models/smollm2-hf"


def test_unknown_or_misordered_stage_names(tmp_path, corpus):
    with pytest.raises(ConfigError, match="bogus"):
        load_config(overrides={"run": {"stages": ["ingest", "bogus"]}})
    with pytest.raises(ConfigError, match="'score' needs stage 'ingest'"):
        load_config(overrides={"run": {"stages": ["score"]}})
    with pytest.raises(ConfigError, match="preset"):
        load_config(preset="huge")


def test_finished_run_resumes_and_refuses_other_config_or_version(tmp_path, corpus, finished, capsys):
    cfg, ref, ref_manifest, before = finished
    st = ref_manifest["stages"]
    assert [st[s]["counts"]["in"] for s in ("ingest", "score", "dedup")] == [42, 41, 41]
    assert st["ingest"]["counts"]["rejected_by_reason"] == {"malformed_json": 1}
    assert st["dedup"]["counts"]["rejected_by_reason"] == {"near_duplicate": 1}
    assert len([k for k in before if k.startswith("ingest/out/")]) == 6  # 41 documents, 8 per part
    copy_of(ref, tmp_path / "r")
    again = run(load_config(cfg), tmp_path / "r", report=False)  # nothing left to do
    assert again.manifest["stages"] == st and outputs(tmp_path / "r") == before
    changed = toml(tmp_path, corpus, "[dedup]\nthreshold = 0.5\nngram = 3\n")
    assert main(["run", str(changed), "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "dedup.ngram, dedup.threshold" in err and len(err.strip().splitlines()) == 1
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    m["versions"]["fastsynth"] = "0.0.1"
    (tmp_path / "r" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ConfigError, match=r"written by fastsynth 0\.0\.1"):
        run(load_config(cfg), tmp_path / "r", report=False)


def test_missing_stage_input_is_named(tmp_path, finished):
    cfg, ref, _, _ = finished
    copy_of(ref, tmp_path / "r")
    # as if the run had been killed before dedup, and an input part then vanished
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    m["stages"]["dedup"] = {"state": "running", "phases": {}, "counts": None}
    (tmp_path / "r" / "manifest.json").write_text(json.dumps(m))
    (tmp_path / "r" / "score" / "out" / "00002.parquet").unlink()
    with pytest.raises(RunError, match=r"stage dedup, part sig/00002: input .*score/out/00002.parquet is missing"):
        run(load_config(cfg), tmp_path / "r", report=False)


def _limited(argv: list[str], fsize_bytes: int) -> subprocess.CompletedProcess:
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({fsize_bytes}, {fsize_bytes}))\n"
            "from fastsynth.cli import main\n"
            f"sys.exit(main({argv!r}))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_full_disk_during_a_part_then_resume(tmp_path, corpus, finished):
    cfg = toml(tmp_path, corpus)
    _, _, ref_manifest, ref_outputs = finished
    # 16 KB: the manifest (~9 KB) and the ingest/score parts (~10 KB) fit, the first dedup
    # signature part (~24 KB) does not
    r = _limited(["run", str(cfg), "-o", str(tmp_path / "r"), "--no-report"], 16_000)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert "stage dedup, part sig/00000" in lines[0] and "File too large" in lines[0]
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["stages"]["score"]["state"] == "done"
    assert m["stages"]["dedup"]["state"] == "running" and not m["stages"]["dedup"]["phases"]
    assert not list((tmp_path / "r").rglob(".*.tmp-*"))
    done = run(load_config(cfg), tmp_path / "r", report=False)
    assert outputs(tmp_path / "r") == ref_outputs
    assert {k: v["counts"] for k, v in done.manifest["stages"].items()} == \
           {k: v["counts"] for k, v in ref_manifest["stages"].items()}


def _immutable(path: Path, on: bool) -> bool:
    """chattr +i/-i: even root cannot create files in an immutable folder (ext4 and most
    Linux file systems); False where chattr is missing or refused."""
    import shutil

    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True).returncode == 0


def test_read_only_output_during_a_part_then_resume(tmp_path, corpus, capsys):
    cfg = toml(tmp_path, corpus)
    sig = tmp_path / "r" / "dedup" / "sig"
    sig.mkdir(parents=True)
    if not _immutable(sig, True):
        pytest.skip("chattr +i is not available here")
    try:
        assert main(["run", str(cfg), "-o", str(tmp_path / "r"), "--no-report"]) == 2
    finally:
        _immutable(sig, False)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "stage dedup, part sig/00000" in lines[0], lines
    assert "Operation not permitted" in lines[0] and "re-run the same command" in lines[0]
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["stages"]["score"]["state"] == "done"
    assert m["stages"]["dedup"]["state"] == "running" and "sig" not in m["stages"]["dedup"]["phases"]
    done = run(load_config(cfg), tmp_path / "r", report=False)
    assert done.manifest["stages"]["dedup"]["counts"]["rejected_by_reason"] == {"near_duplicate": 1}


def test_part_results_must_balance():
    PartResult(5, 3, 2, {"a": 2}).check("here")
    with pytest.raises(RunError, match=r"here: records in \(5\) != out \(3\) \+ rejected \(1\)"):
        PartResult(5, 3, 1).check("here")
    with pytest.raises(RunError, match="do not sum"):
        PartResult(5, 3, 2, {"a": 1}).check("here")
    assert issubclass(RunError, FastsynthError)


def test_fit_warnings_flag_degenerate_constants_not_plausible_ones():
    from fastsynth.run.report import fit_warnings
    hoffmann = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    assert fit_warnings(hoffmann) == []
    # the default preset's 12-run sweep once fitted these with R^2 0.976
    odd = fit_warnings({"E": 1e-14, "A": 3.1e40, "B": 52.0, "alpha": 12.6, "beta": 0.31})
    assert len(odd) == 2 and odd[0].startswith("E = 1e-14") and odd[1].startswith("alpha = 12.6")
    assert fit_warnings({**hoffmann, "beta": 0.01})[0].startswith("beta = 0.01")
