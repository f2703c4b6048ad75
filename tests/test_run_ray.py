"""The Ray executor (fastsynth.run.ray_executor) on a real local Ray with 2 CPUs.

One Ray session serves the module (its start-up is most of the cost). The same stages
run with the local executor and with Ray must leave byte-identical part files; a
killed worker costs one retry; a killed driver resumes; bad addresses and failing parts
are one-line errors naming the stage and part.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import ray  # the ray extra: scripts/test.sh installs it, so this test runs in CI (never skips)

from fastsynth.errors import ConfigError  # noqa: E402
from fastsynth.run.executor import LocalExecutor, run_stage  # noqa: E402
from fastsynth.run.ray_executor import (RayExecutor, check_address, log_path,  # noqa: E402
                                        remove_fallback_temp_dir, temp_dir_for)
from fastsynth.run.rundir import PartResult, RunDir, RunError  # noqa: E402
from fastsynth.run.stage import Map, Part, Stage, View, one_to_one  # noqa: E402
from fastsynth.run.stages import dedup, ingest, score, synth  # noqa: E402

# Test stages below are defined in this module; Ray workers get them by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _corpus(path: Path) -> Path:
    """260 English documents (150-word pieces of Python's own help topics) plus ~50 edited
    copies of some of them (near-duplicates), shuffled with a fixed seed."""
    from pydoc_data.topics import topics

    paras = []
    for name in sorted(topics):
        words = topics[name].split()
        for k in range(0, len(words) - 149, 150):
            paras.append((f"{name}/{k}", " ".join(words[k:k + 150]).replace(". ", ".\n")))
    rng = random.Random(7)
    docs = paras[:260]
    for i, (pid, text) in enumerate(rng.sample(docs, 50)):
        # one word more at the end, and a different case or punctuation (normalised away)
        edited = (text.upper() if i % 2 else text.replace(".", ",")) + " indeed"
        docs.append((f"{pid}/copy", edited))
    rng.shuffle(docs)
    with open(path, "w", encoding="utf-8") as f:
        for i, t in docs:
            f.write(json.dumps({"id": i, "text": t}) + "\n")
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("r")


@pytest.fixture(scope="module")
def source(base):
    return _corpus(base / "corpus.jsonl")


@pytest.fixture(scope="module")
def scored(base, source):
    """A run directory with ingest and score done (local executor), to copy."""
    root = base / "scored"
    _run(root, _configs(source)[:2], LocalExecutor(show_progress=False))
    return root


@pytest.fixture(scope="module")
def executor(base):
    ex = RayExecutor(num_cpus=2, max_retries=2, show_progress=False)
    ex.start(base / "ray-home")
    yield ex
    ex.shutdown()


def _configs(source: Path, **dedup_kw):
    return [(ingest.STAGE, ingest.IngestConfig(source=str(source), part_docs=40)),
            (score.STAGE, score.ScoreConfig(gzip_band=(0.25, 0.6))),
            (dedup.STAGE, dedup.DedupConfig(**dedup_kw))]


def _run(root: Path, stages, executor) -> RunDir:
    # the manifest's config names the corpus stages only, so a copy of a scored run resumes
    rd = RunDir(root, {s.name: str(c) for s, c in stages[:2]})
    for stage, config in stages:
        run_stage(rd, stage, config, executor)
    return rd


def _outputs(root: Path) -> dict[str, bytes]:
    """Every record file of the run (parts, rejects, global steps), by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))
            if p.relative_to(root).parts[0] not in ("ray", "logs")}


def test_ray_output_identical_to_local(tmp_path, source, executor):
    """(keep=score and split bands are covered against the library below, locally.)"""
    stages = _configs(source)
    local = _run(tmp_path / "local", stages, LocalExecutor(show_progress=False))
    remote = _run(tmp_path / "ray", stages, executor)
    a, b = _outputs(tmp_path / "local"), _outputs(tmp_path / "ray")
    assert sorted(a) == sorted(b)
    assert any(k.startswith("score/out/") for k in a) and any(k.startswith("dedup/out/") for k in a)
    assert [k for k in a if a[k] != b[k]] == []
    for name in ("score", "dedup"):
        assert local.manifest["stages"][name]["counts"] == remote.manifest["stages"][name]["counts"]
    counts = remote.manifest["stages"]["dedup"]["counts"]
    assert counts["rejected_by_reason"].get("near_duplicate", 0) >= 30  # the edited copies
    assert counts["balanced"]
    # every Ray part left a log: one start and one done line
    for part in remote.manifest["stages"]["score"]["phases"]["out"]:
        lines = [json.loads(x) for x in log_path(Part(str(tmp_path / "ray"), "score", "out", part))
                 .read_text().splitlines()]
        assert [x["event"] for x in lines] == ["start", "done"] and lines[1]["n_in"] > 0


# -- a worker killed mid-part -------------------------------------------------------------
@dataclass(frozen=True)
class SlowConfig:
    marks: str  # folder for pid files and attempt markers
    victim: str = ""  # the part whose first attempt waits to be killed
    fail: str = ""  # the part that raises on every attempt


def slow_part(config: SlowConfig, part: Part) -> PartResult:
    from fastsynth.atomic import write_parquet
    import pyarrow as pa

    marks = Path(config.marks)
    if part.id == config.fail:
        raise RuntimeError(f"part {part.id} always fails")
    first = not (marks / f"{part.id}.tried").exists()
    (marks / f"{part.id}.tried").touch()
    if part.id == config.victim and first:
        (marks / f"{part.id}.pid").write_text(str(os.getpid()))
        time.sleep(120)  # the test kills this process long before
    write_parquet(part.out, pa.table({"part": [part.id], "pid": [0]}))
    return PartResult(n_in=1, n_out=1)


def _slow_parts(config, view: View, stage: str, phase: str) -> list[Part]:
    return [Part(view.root, stage, phase, f"{i:03d}") for i in range(6)]


SLOW = Stage("slow", SlowConfig, (Map("out", slow_part, _slow_parts, counts=True),), output="out",
             unit="parts")


@pytest.mark.parametrize("actors", [0, 2])
def test_worker_killed_mid_part_costs_one_retry(tmp_path, executor, actors):
    """As a task (actors=0) or on a pool: a killed actor is restarted and its part retried."""
    stage = SLOW if not actors else Stage("slow", SlowConfig, (Map("out", slow_part, _slow_parts, counts=True,
                                                                   actors=actors),), output="out", unit="parts")
    marks = tmp_path / "marks"
    marks.mkdir()
    config = SlowConfig(str(marks), victim="002")
    pidfile = marks / "002.pid"
    killed = []

    def killer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not pidfile.exists():
            time.sleep(0.05)
        if not pidfile.exists():
            return
        time.sleep(0.1)  # the pid is written in one small write; let it land
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    rd = RunDir(tmp_path / "run", {"slow": "kill"})
    st = run_stage(rd, stage, config, executor)
    t.join()
    assert killed and st["state"] == "done" and st["counts"]["out"] == 6
    starts = {p: [json.loads(x)["event"] for x in log_path(Part(str(rd.root), "slow", "out", p))
                  .read_text().splitlines()].count("start") for p in st["phases"]["out"]}
    assert starts == {f"{i:03d}": (2 if i == 2 else 1) for i in range(6)}


def test_part_failing_every_retry_names_stage_and_part_and_resumes(tmp_path, executor):
    marks = tmp_path / "marks"
    marks.mkdir()
    rd = RunDir(tmp_path / "run", {"slow": "fail"})
    with pytest.raises(RunError) as e:
        run_stage(rd, SLOW, SlowConfig(str(marks), fail="004"), executor)
    msg = str(e.value)
    assert "\n" not in msg and "stage slow, part out/004" in msg and "3 attempts" in msg
    assert "always fails" in msg
    # the other parts were recorded; the log shows the three attempts
    assert sorted(rd.parts("slow", "out")) == ["000", "001", "002", "003", "005"]
    log = log_path(Part(str(rd.root), "slow", "out", "004")).read_text().splitlines()
    assert [json.loads(x)["event"] for x in log].count("start") == 3
    # the run stays resumable: with the fault gone only part 004 runs
    rd2 = RunDir(tmp_path / "run", {"slow": "fail"})
    st = run_stage(rd2, SLOW, SlowConfig(str(marks), fail=""), executor)
    assert st["state"] == "done" and st["counts"]["out"] == 6
    assert log_path(Part(str(rd.root), "slow", "out", "000")).read_text().count('"start"') == 1


def test_bad_address_is_one_line_error(tmp_path):
    with pytest.raises(ConfigError) as e:
        check_address("127.0.0.1:1", timeout=2)
    assert "--ray-address 127.0.0.1:1" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        check_address("no-port-here")


def test_bad_address_through_the_cli(tmp_path, source):
    r = subprocess.run([sys.executable, "-c", "import sys; from fastsynth.cli import main; sys.exit(main())",
                        "run", "--source", str(source), "-o",
                        str(tmp_path / "run"), "--executor", "ray", "--ray-address", "127.0.0.1:1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "--ray-address 127.0.0.1:1" in r.stderr and "Traceback" not in r.stderr


def test_long_run_dir_falls_back_to_short_temp_dir(tmp_path):
    long = tmp_path / ("x" * 80)
    long.mkdir()
    got, note = temp_dir_for(long)
    assert note is not None and str(got) in note and len(str(got)) < 40
    assert (long / "ray").resolve() == got.resolve()
    short, none = temp_dir_for("/tmp/r")
    assert none is None and short == Path("/tmp/r/ray")
    (got / "session_x").mkdir()
    remove_fallback_temp_dir(long, got)      # what RayExecutor.shutdown does with it
    assert not got.exists() and not (long / "ray").is_symlink()


def test_local_ray_temp_dir_is_inside_the_run(executor, base):
    assert executor.temp_dir is not None
    sessions = list(Path(executor.temp_dir).glob("session_*"))
    assert sessions, executor.temp_dir
    assert (base / "ray-home" / "ray").resolve() == Path(executor.temp_dir).resolve()


# -- actor pools: what a part caches per process is loaded once per actor ------------------
def model_part(config: SlowConfig, part: Part) -> PartResult:
    cache = globals().setdefault("_MODEL", {})  # the function's own module-level cache
    if "model" not in cache:  # stands for loading a model: counted in a file per load
        cache["model"] = os.getpid()
        with open(Path(config.marks) / f"load-{os.getpid()}", "a") as f:
            f.write("x")
    from fastsynth.atomic import write_parquet
    import pyarrow as pa

    write_parquet(part.out, pa.table({"part": [part.id], "pid": [os.getpid()]}))
    return PartResult(n_in=1, n_out=1)


def test_actor_pool_loads_once_per_actor(tmp_path, executor):
    marks = tmp_path / "marks"
    marks.mkdir()
    phase = Map("out", model_part, _slow_parts, counts=True, actors=2)
    stage = Stage("gen", SlowConfig, (phase,), output="out", unit="parts")
    rd = RunDir(tmp_path / "run", {"gen": "pool"})
    parts = _slow_parts(None, None or View(str(rd.root), {}), "gen", "out")
    got = []
    executor.map_parts(model_part, SlowConfig(str(marks)), parts, lambda p, r: got.append(p.id), phase=phase)
    import pyarrow.parquet as pq

    pids = {pq.read_table(p.out).column("pid")[0].as_py() for p in parts}
    loads = sorted(marks.glob("load-*"))
    assert sorted(got) == [p.id for p in parts]
    assert len(pids) <= 2 and len(loads) == len(pids)
    assert all(f.read_text() == "x" for f in loads)  # one load per actor, not per part
    del stage


def pid_part(config: SlowConfig, part: Part) -> PartResult:
    """Writes the pid of the process it ran in; raises where ``config.fail`` = ``phase/id``."""
    from fastsynth.atomic import write_parquet
    import pyarrow as pa

    if f"{part.phase}/{part.id}" == config.fail:
        raise RuntimeError(f"part {part.phase}/{part.id} always fails")
    write_parquet(part.out, pa.table({"part": [part.id], "pid": [os.getpid()]}))
    return PartResult(n_in=1, n_out=1)


def walks_pid_part(config: SlowConfig, part: Part) -> PartResult:
    return pid_part(config, part)  # another function per phase, as in the synth stage


def answer_pid_part(config: SlowConfig, part: Part) -> PartResult:
    return pid_part(config, part)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_dead(pids: set[int], seconds: float = 20.0) -> list[int]:
    """The pids still alive after up to ``seconds`` (ray.kill is asynchronous)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(map(_alive, pids)):
        time.sleep(0.1)
    return sorted(p for p in pids if _alive(p))


def pool_gone_step(config, view: View) -> PartResult:
    """A driver step after the stage's last Map phase: records which processes that ran its
    parts are still alive (``RUN/pool-at-out.json``)."""
    import pyarrow.parquet as pq

    pids = {pq.read_table(f).column("pid")[0].as_py() for f in (Path(view.root) / "gen-pool").rglob("*.parquet")}
    (Path(view.root) / "pool-at-out.json").write_text(json.dumps({"alive": _wait_dead(pids)}))
    return PartResult()


@dataclass(frozen=True)
class PoolConfig(SlowConfig):
    gen_actors: int = 2  # what synth's Map phases size their pool by (synth.gen_actors)
    gen_gpus: float = 0.0


def test_synth_stage_phases_share_one_pool_that_dies_with_the_stage(tmp_path, executor):
    """The synth stage's phases as it declares them (gen, walks, answer: actors =
    gen_actors, resources = gen_resources; the driver's select between them), with
    stand-in parts that record their process: all three phases run on ONE pool (<= 2
    processes for 17 parts; a pool per phase would show up to 6), so a model the parts
    cache loads once per actor for the stage. A part failing on every attempt is retried
    on its actor and named in the error; after the failed stage no process of the pool is
    alive and the executor holds no pool; a re-run finishes that part alone, on a new
    pool. (The real stage on the quick preset: benchmarks/RESULTS.md, 2026-11-27.)"""
    import pyarrow.parquet as pq

    declared = [ph.name for ph in synth.STAGE.phases]
    assert declared == ["gen", "walks", "select", "answer", "out"]
    fns = {"gen": pid_part, "walks": walks_pid_part, "answer": answer_pid_part, "select": lambda c, v: PartResult(),
           "out": pool_gone_step}
    phases = tuple(dataclasses.replace(ph, fn=fns[ph.name], parts=_slow_parts, counts=ph.name == "answer")
                   if isinstance(ph, Map) else dataclasses.replace(ph, fn=fns[ph.name], counts=False)
                   for ph in synth.STAGE.phases)
    stage = Stage("gen-pool", PoolConfig, phases, output="answer", unit="parts")
    rd = RunDir(tmp_path / "run", {"gen-pool": "fail"})
    with pytest.raises(RunError) as e:
        run_stage(rd, stage, PoolConfig(str(tmp_path), fail="answer/004"), executor)
    assert "stage gen-pool, part answer/004" in str(e.value) and "3 attempts" in str(e.value)
    assert executor.held_actors == 0  # nothing held after the stage
    files = sorted((rd.root / "gen-pool").rglob("*.parquet"))
    assert len(files) == 17
    pids = {pq.read_table(f).column("pid")[0].as_py() for f in files}
    assert 1 <= len(pids) <= 2, pids  # one pool for the three phases
    assert log_path(Part(str(rd.root), "gen-pool", "answer", "004")).read_text().count('"start"') == 3
    assert _wait_dead(pids) == [], "a process of the finished stage's pool is still alive"
    st = run_stage(RunDir(tmp_path / "run", {"gen-pool": "fail"}), stage, PoolConfig(str(tmp_path)), executor)
    assert st["state"] == "done" and st["counts"]["out"] == 6
    assert log_path(Part(str(rd.root), "gen-pool", "answer", "004")).read_text().count('"start"') == 4
    assert log_path(Part(str(rd.root), "gen-pool", "gen", "000")).read_text().count('"start"') == 1
    assert pq.read_table(rd.root / "gen-pool" / "answer" / "004.parquet").column("pid")[0].as_py() not in pids
    # the driver's step after the last Map phase (synth's `out`) ran with no actor alive
    assert json.loads((rd.root / "pool-at-out.json").read_text()) == {"alive": []}


def test_gpus_no_node_has_are_an_error_not_a_hang(tmp_path, executor):
    """synth.gen_gpus = 1 on the local Ray of a machine without GPUs: Ray would keep the
    actors pending forever; the executor names the stage, the phase, what each part asks
    for and what the nodes have, before any actor is made; the run directory resumes
    once the setting is fixed."""
    phases = tuple(dataclasses.replace(ph, fn=pid_part, parts=_slow_parts, counts=True)
                   for ph in synth.STAGE.phases[:1])
    stage = Stage("gpu-gen", PoolConfig, phases, output="gen", unit="parts")
    assert ray.cluster_resources().get("GPU", 0) == 0
    rd = RunDir(tmp_path / "run", {"gpu-gen": "gpus"})
    with pytest.raises(ConfigError) as e:
        run_stage(rd, stage, PoolConfig(str(tmp_path), gen_gpus=1.0), executor)
    msg = str(e.value)
    assert "stage gpu-gen, phase gen" in msg and "{CPU: 1, GPU: 1}" in msg and "GPU: 0" in msg, msg
    assert "synth.gen_gpus" in msg
    assert executor.held_actors == 0 and not list((rd.root / "gpu-gen").rglob("*.parquet"))
    st = run_stage(RunDir(tmp_path / "run", {"gpu-gen": "gpus"}), stage, PoolConfig(str(tmp_path)), executor)
    assert st["state"] == "done" and st["counts"]["out"] == 6


def gpu_part(config: SlowConfig, part: Part) -> PartResult:
    """Writes its process and the CUDA_VISIBLE_DEVICES Ray gave it. Parts gen/000 and
    gen/001 wait for each other, so they run at once, on two actors."""
    from fastsynth.atomic import write_parquet
    import pyarrow as pa

    marks = Path(config.marks)
    (marks / f"{part.phase}-{part.id}.started").touch()
    if part.phase == "gen" and part.id in ("000", "001"):
        deadline = time.monotonic() + 90
        while not all((marks / f"gen-{i}.started").exists() for i in ("000", "001")):
            if time.monotonic() > deadline:
                raise RuntimeError("gen/000 and gen/001 never ran at once")
            time.sleep(0.05)
    write_parquet(part.out, pa.table({"part": [part.id], "pid": [os.getpid()],
                                      "cuda": [os.environ.get("CUDA_VISIBLE_DEVICES", "")]}))
    return PartResult(n_in=1, n_out=1)


def gpu_stage() -> Stage:
    """The synth stage's phases (gen, walks, answer on its actor pool, sized and placed by
    gen_actors / gen_gpus) with :func:`gpu_part` for their parts."""
    phases = tuple(dataclasses.replace(ph, fn=gpu_part, parts=_slow_parts, counts=ph.name == "answer")
                   if isinstance(ph, Map) else
                   dataclasses.replace(ph, fn=lambda c, v: PartResult(), counts=False)
                   for ph in synth.STAGE.phases)
    return Stage("gpu-pool", PoolConfig, phases, output="answer", unit="parts")


# A Ray of its own, declaring 2 GPUs on this CPU machine (Ray schedules declared GPUs and
# sets CUDA_VISIBLE_DEVICES as for real ones): a process apart from this module's Ray.
GPU_CLUSTER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import ray
    ray.init(num_cpus=4, num_gpus=2, _temp_dir=sys.argv[1], include_dashboard=False, log_to_driver=False)
    sys.path.insert(0, sys.argv[2])
    import test_run_ray as t
    from fastsynth.run.executor import run_stage
    from fastsynth.run.ray_executor import RayExecutor
    from fastsynth.run.rundir import RunDir
    ex = RayExecutor(stall_seconds=60, show_progress=False)
    for name, actors, gpus in json.loads(sys.argv[4]):
        marks = Path(sys.argv[3]) / name
        marks.mkdir()
        st = run_stage(RunDir(marks / "run", {"gpu-pool": name}), t.gpu_stage(),
                       t.PoolConfig(str(marks), gen_actors=actors, gen_gpus=gpus), ex)
        print("DONE", name, st["counts"]["out"], flush=True)
        assert ex.held_actors == 0
    # more GPUs than any node has, on a cluster this executor joined: warned about (an
    # autoscaler could add such a node), once per phase however often it is checked
    big = t.PoolConfig(sys.argv[3], gen_gpus=4.0)
    ex.check_stages(sys.argv[3], [(t.gpu_stage(), big)])
    ex.check_stages(sys.argv[3], [(t.gpu_stage(), big)])
    print("CHECKED", flush=True)
""")


def test_generation_actors_get_a_gpu_each_and_a_pool_larger_than_the_gpus_still_runs(tmp_path):
    """synth.gen_gpus = 1 on a cluster with 2 GPUs: each actor of the stage's pool (one
    vLLM engine each, in a real run) is given its own GPU — CUDA_VISIBLE_DEVICES 0 on one,
    1 on the other — and every part's log names the GPU it ran on. With gen_actors = 3
    the third actor never fits: the stage runs on the two that do and says so, instead of
    leaving the parts handed to the third queued forever. A demand no node meets, on a
    cluster joined rather than started, is a warning, given once per phase."""
    import pyarrow.parquet as pq

    script = tmp_path / "gpu_cluster.py"
    script.write_text(GPU_CLUSTER)
    ray_tmp = tempfile.mkdtemp(prefix="fsgpu-", dir="/tmp")  # Ray's socket paths must stay short
    cases = [["two", 2, 1.0], ["three", 3, 1.0]]
    # its own process group: a hang is killed with the Ray processes it started
    proc = subprocess.Popen([sys.executable, str(script), ray_tmp, str(Path(__file__).parent), str(tmp_path),
                             json.dumps(cases)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the stage did not finish in 300 s: {out[-1000:]} {err[-2000:]}")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, (out[-2000:], err[-3000:])
    assert out.split("\n")[:3] == ["DONE two 6", "DONE three 6", "CHECKED"], out
    for name, _actors, _gpus in cases:
        root = tmp_path / name / "run"
        cuda_of: dict[int, set[str]] = {}
        for f in sorted((root / "gpu-pool").rglob("*.parquet")):
            row = pq.read_table(f).to_pylist()[0]
            cuda_of.setdefault(row["pid"], set()).add(row["cuda"])
            phase = f.parent.name
            starts = [json.loads(x) for x in log_path(Part(str(root), "gpu-pool", phase, f.stem))
                      .read_text().splitlines() if '"start"' in x]
            assert [x["gpus"] for x in starts] == [[row["cuda"]]], (name, phase, f.stem, starts)
        assert len(cuda_of) == 2, (name, cuda_of)  # two actors ran parts (gen/000, gen/001 at once)
        assert all(len(c) == 1 for c in cuda_of.values()), cuda_of  # an actor keeps its GPU
        assert sorted(c for cs in cuda_of.values() for c in cs) == ["0", "1"], cuda_of
    assert "gpu-pool/gen ran on 2 of its pool's 3 actors" in err, err[-2000:]
    assert "{CPU: 1, GPU: 1}" in err and err.count("ran on 2 of") == 1, err[-2000:]
    warned = [ln for ln in err.splitlines() if "its parts wait until the cluster adds such a node" in ln]
    assert [ln.split(", phase ")[1].split(":")[0] for ln in warned] == ["gen", "walks", "answer"], err[-2000:]
    assert all("{CPU: 1, GPU: 4}" in ln and "GPU: 2" in ln for ln in warned), warned


def _load_on_driver_only(driver_pid: int) -> "DriverOnly":
    if os.getpid() != driver_pid:
        raise RuntimeError("this config cannot be loaded in a worker")
    return DriverOnly(driver_pid)


@dataclass(frozen=True)
class DriverOnly:
    """A config value that unpickles only in the driver's process: an actor made with it
    fails in its constructor (as one whose model files are missing on its node would)."""
    driver_pid: int

    def __reduce__(self):
        return _load_on_driver_only, (self.driver_pid,)


@dataclass(frozen=True)
class BrokenPoolConfig(SlowConfig):
    gen_actors: int = 2
    value: DriverOnly | None = None


def test_pool_whose_actors_cannot_start_is_one_error_naming_the_stage(tmp_path, executor):
    phases = tuple(dataclasses.replace(ph, fn=pid_part, parts=_slow_parts, counts=True)
                   for ph in synth.STAGE.phases[:1])
    stage = Stage("dead-pool", BrokenPoolConfig, phases, output="gen", unit="parts")
    rd = RunDir(tmp_path / "run", {"dead-pool": "x"})
    cfg = BrokenPoolConfig(str(tmp_path), value=DriverOnly(os.getpid()))
    with pytest.raises(RunError) as e:
        run_stage(rd, stage, cfg, executor)
    msg = str(e.value)
    assert msg.startswith("stage dead-pool: no actor of its pool could start") and \
        "this config cannot be loaded in a worker" in msg and "\n" not in msg, msg
    assert executor.held_actors == 0 and not list((rd.root / "dead-pool").rglob("*.parquet"))


def test_run_checks_every_stage_before_its_first_part(tmp_path, source, executor):
    """`fastsynth run` with synth.gen_gpus = 1 on CPU nodes fails before ingest runs, not
    after the stages before synth; with the setting fixed, the same run directory runs."""
    from fastsynth.run.pipeline import load_config, run

    stages = {"run": {"source": str(source), "stages": ["ingest", "score", "dedup", "synth"]},
              "ingest": {"limit": 20, "part_docs": 10}}
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"stage synth, phase gen: .*GPU: 1"):
        run(load_config(overrides={**stages, "synth": {"gen_gpus": 1.0}}), tmp_path / "r",
            executor=executor, report=False)
    assert time.monotonic() - t0 < 30
    assert not list((tmp_path / "r").rglob("*.parquet"))  # no stage ran
    assert not (tmp_path / "r" / "manifest.json").exists()  # nor was the config recorded
    rd = run(load_config(overrides={**stages, "run": {**stages["run"], "stages": ["ingest"]}}),
             tmp_path / "r", executor=executor, report=False)
    assert rd.manifest["stages"]["ingest"]["state"] == "done"


def test_resource_demand_and_fit():
    from fastsynth.run.ray_executor import fits_some_node, ray_demand

    need = ray_demand({"num_cpus": 1, "num_gpus": 0.5, "resources": {"A100": 1}, "memory": 0})
    assert need == {"CPU": 1.0, "GPU": 0.5, "A100": 1.0}
    assert not fits_some_node(need, [{"CPU": 16, "GPU": 8}, {"CPU": 2, "A100": 1}])
    assert fits_some_node(need, [{"CPU": 16, "GPU": 8}, {"CPU": 2, "GPU": 1, "A100": 1}])
    assert not fits_some_node({"CPU": 1}, [])
    assert fits_some_node({}, [{}])


# -- the driver killed mid-stage ----------------------------------------------------------
DRIVER = textwrap.dedent("""
    import sys, time
    from dataclasses import dataclass
    from pathlib import Path
    import pyarrow as pa
    from fastsynth.atomic import write_parquet
    from fastsynth.run.executor import run_stage
    from fastsynth.run.ray_executor import RayExecutor
    from fastsynth.run.rundir import PartResult, RunDir
    from fastsynth.run.stage import Map, Part, Stage

    @dataclass(frozen=True)
    class C:
        delay: float

    def work(config, part):
        time.sleep(config.delay)
        write_parquet(part.out, pa.table({"x": [int(part.id)]}))
        return PartResult(n_in=1, n_out=1)

    def parts(config, view, stage, phase):
        return [Part(view.root, stage, phase, f"{i:03d}") for i in range(6)]

    root, address, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    stage = Stage("steps", C, (Map("out", work, parts, counts=True),), output="out", unit="parts")
    rd = RunDir(root, {"steps": "driver-kill"})
    st = run_stage(rd, stage, C(delay), RayExecutor(address, show_progress=False))
    print("DONE", st["counts"]["out"])
""")


def test_driver_killed_then_rerun_resumes(tmp_path, executor):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    address = ray.get_runtime_context().gcs_address
    root = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, str(script), str(root), address, "1.0"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = root / "manifest.json"
    deadline = time.monotonic() + 60
    done_before: list[str] = []
    while time.monotonic() < deadline and p.poll() is None:
        if manifest.exists():
            try:
                done_before = list(json.loads(manifest.read_text())["stages"].get("steps", {})
                                   .get("phases", {}).get("out", {}))
            except json.JSONDecodeError:
                done_before = []
            if 2 <= len(done_before) < 6:
                break
        time.sleep(0.05)
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert 2 <= len(done_before) < 6
    r = subprocess.run([sys.executable, str(script), str(root), address, "0"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "DONE 6" in r.stdout, r.stderr[-2000:]
    final = json.loads(manifest.read_text())["stages"]["steps"]
    assert final["state"] == "done" and sorted(final["phases"]["out"]) == [f"{i:03d}" for i in range(6)]
    for part in done_before:  # parts recorded before the kill were not run again
        assert log_path(Part(str(root), "steps", "out", part)).read_text().count('"start"') == 1


# -- the distributed dedup stage equals the library's dedup() ------------------------------
@pytest.mark.parametrize("kw,band_part_docs", [
    ({}, None), ({"keep": "score", "score_field": "gzip_ratio"}, 100), ({"verify": False}, None),
    ({"threshold": 0.5, "ngram": 3}, None)])
def test_dedup_stage_equals_library_dedup(tmp_path, source, scored, monkeypatch, kw, band_part_docs):
    """sig -> bands -> verify -> cluster -> out (local executor) keeps exactly the documents
    fastsynth.dedup.dedup keeps over the same documents in part order, and names the same
    kept document for each dropped one; also with each band split into key ranges."""
    import numpy as np
    import pyarrow.parquet as pq

    from fastsynth.dedup import dedup as library_dedup
    from fastsynth.run.records import read_parts

    if band_part_docs is not None:  # split bands, and sig files of many small row groups
        monkeypatch.setattr(dedup, "BAND_PART_DOCS", band_part_docs)
        monkeypatch.setattr(dedup, "SIG_ROW_GROUP", 7)
    shutil.copytree(scored, tmp_path / "run")
    rd = _run(tmp_path / "run", _configs(source, **kw), LocalExecutor(show_progress=False))
    n_bands = rd.manifest["stages"]["dedup"]["phases"]["cluster"]["global"]["info"]["bands"]
    n_docs = rd.manifest["stages"]["score"]["counts"]["out"]
    ranges = 1 if band_part_docs is None else -(-n_docs // band_part_docs)
    assert ranges == 1 or ranges >= 2
    assert len(rd.parts("dedup", "bands")) == n_bands * ranges
    docs = read_parts(rd.root, [f"score/out/{p}.parquet" for p in rd.parts("score", "out")])
    cfg = dedup.DedupConfig(**kw)
    ref = library_dedup(docs.column("text").to_pylist(), threshold=cfg.threshold, num_perm=cfg.num_perm,
                        ngram=cfg.ngram, verify=cfg.verify, seed=cfg.seed, keep=cfg.keep,
                        scores=docs.column("gzip_ratio").to_numpy() if cfg.keep == "score" else None)
    ids = np.array(docs.column("id").to_pylist(), dtype=object)
    kept = read_parts(rd.root, [f"dedup/out/{p}.parquet" for p in rd.parts("dedup", "out")])
    assert kept.column("id").to_pylist() == ids[ref.keep].tolist()
    assert 0 < ref.n_removed < len(ids)
    rejects = [r for f in sorted((rd.root / "rejects" / "dedup").glob("*.parquet"))
               for r in pq.read_table(f).to_pylist()]
    want = {ids[i]: f"kept {ids[ref.cluster_id[i]]} (cluster of {ref.cluster_size[i]})"
            for i in np.flatnonzero(~ref.keep)}
    assert {r["id"]: r["detail"] for r in rejects} == want
    info = rd.manifest["stages"]["dedup"]["phases"]["cluster"]["global"]["info"]
    assert info["cluster_size_histogram"] == {str(k): v for k, v in ref.size_histogram().items()}
    assert info["pairs"]["candidates"] == ref.candidate_pairs



NO_FASTSYNTH = textwrap.dedent("""
    import sys
    import ray
    ray.init(address=sys.argv[1], runtime_env={"env_vars": {"PYTHONPATH": sys.argv[2]}}, log_to_driver=False)
    from fastsynth.errors import ConfigError
    from fastsynth.run.ray_executor import RayExecutor
    try:
        RayExecutor(sys.argv[1]).start(sys.argv[3])
    except ConfigError as e:
        print("ERROR", e)
""")
# Started first in this job's workers: hides the installed fastsynth (its import hook and
# the source folders its .pth adds), as on the nodes of a cluster where it is not installed.
HIDE_FASTSYNTH = textwrap.dedent("""
    import os, sys
    sys.meta_path[:] = [f for f in sys.meta_path if "fastsynth" not in type(f).__module__]
    sys.path[:] = [p for p in sys.path if not os.path.isfile(os.path.join(p, "fastsynth", "_version.py"))]
""")


def test_cluster_without_fastsynth_is_named(tmp_path, executor):
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "sitecustomize.py").write_text(HIDE_FASTSYNTH)
    script = tmp_path / "driver.py"
    script.write_text(NO_FASTSYNTH)
    r = subprocess.run([sys.executable, str(script), ray.get_runtime_context().gcs_address, str(stub),
                        str(tmp_path / "run")], capture_output=True, text=True, timeout=180)
    line = [x for x in r.stdout.splitlines() if x.startswith("ERROR")]
    assert line, (r.stdout[-1000:], r.stderr[-2000:])
    assert "workers need fastsynth" in line[0] and "missing" in line[0] and "\n" not in line[0]


CLI = [sys.executable, "-c", "import sys; from fastsynth.cli import main; sys.exit(main())"]


def test_fastsynth_run_on_ray_from_the_cli(tmp_path, source, executor):
    """`fastsynth run --executor ray --ray-address ...`: the stages run as Ray tasks (per-part
    logs appear) and the run ends with every listed stage done."""
    cfg = tmp_path / "run.toml"
    cfg.write_text('[run]\nstages = ["ingest", "score", "dedup"]\n[ingest]\npart_docs = 80\n'
                   '[score]\ngzip_band = [0.25, 0.6]\n')
    root = tmp_path / "run"
    r = subprocess.run(CLI + ["run", str(cfg), "--source", str(source), "-o", str(root), "--executor", "ray",
                              "--ray-address", ray.get_runtime_context().gcs_address],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    stages = json.loads((root / "manifest.json").read_text())["stages"]
    assert {s: stages[s]["state"] for s in ("ingest", "score", "dedup")} == dict.fromkeys(
        ("ingest", "score", "dedup"), "done")
    assert stages["dedup"]["counts"]["rejected_by_reason"].get("near_duplicate", 0) >= 30
    assert sorted(p.stem for p in (root / "logs" / "score" / "out").glob("*.jsonl")) == \
        sorted(stages["score"]["phases"]["out"])


# -- the stage commands with --executor ray (in this process: the module's Ray session) ----
def _corpus_with_extras(source: Path, path: Path) -> Path:
    """``source`` with a numeric field ``q`` on every record and a few bad lines."""
    lines = []
    for k, line in enumerate(source.read_text(encoding="utf-8").splitlines()):
        rec = json.loads(line)
        lines.append(json.dumps({**rec, "q": (k * 7) % 11}))
        if k % 97 == 5:
            lines.append('{"id": "broken", "text": ')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def messy(base, source):
    return _corpus_with_extras(source, base / "messy.jsonl")


def _cli(*argv) -> int:
    from fastsynth.cli import main

    return main([str(a) for a in argv])


def _address() -> str:
    return ray.get_runtime_context().gcs_address


def test_score_command_on_ray_equals_local(tmp_path, messy, executor):
    common = ["--on-error", "skip", "--write-kept", "--batch-size", "60", "--gzip-band", "0.25", "0.6"]
    assert _cli("score", messy, "-o", tmp_path / "local", *common) == 0
    assert _cli("score", messy, "-o", tmp_path / "ray", *common, "--executor", "ray",
                "--ray-address", _address()) == 0
    for name in ("scores.parquet", "kept.parquet", "rejects.jsonl"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("local", "ray"))
    assert b["settings"].pop("executor") == "ray" and a["settings"].pop("executor") == "local"
    a.pop("throughput"), b.pop("throughput")
    assert a == b
    assert a["counts"]["rejected_at_input"] == 4 and 0 < a["counts"]["kept"] < a["counts"]["scored"]
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == sorted(
        p.name for p in (tmp_path / "local").iterdir())  # the work directory is swept


def test_dedup_command_on_ray_equals_local(tmp_path, messy, executor):
    common = ["--on-error", "skip", "--batch-size", "70", "--keep", "score", "--score-field", "q"]
    out = {}
    for kind in ("local", "ray"):
        out[kind] = tmp_path / kind / "kept.jsonl"
        out[kind].parent.mkdir()
        extra = ["--executor", "ray", "--ray-address", _address()] if kind == "ray" else []
        assert _cli("dedup", messy, "-o", out[kind], "--clusters", out[kind].with_name("clusters.parquet"),
                    "--summary-json", out[kind].with_name("summary.json"), *common, *extra) == 0
    for name in ("kept.jsonl", "kept.jsonl.rejects.jsonl", "clusters.parquet"):
        a, b = (out[k].with_name(name).read_bytes() for k in ("local", "ray"))
        assert a == b, name
    a, b = (json.loads(out[k].with_name("summary.json").read_text()) for k in ("local", "ray"))
    assert b.pop("executor") == "ray"
    # the stage verifies each distinct candidate pair once; the library skips pairs whose
    # ends are already joined: only those two counts may differ (docs/scale.md)
    for s in (a, b):
        s.pop("seconds"), s["pairs"].pop("verified"), s["pairs"].pop("matched")
    assert a == b
    assert a["duplicates_removed"] >= 30 and a["rejected_at_input"] == 4
    assert sorted(p.name for p in out["ray"].parent.iterdir()) == sorted(p.name for p in out["local"].parent.iterdir())


def test_dedup_command_on_ray_refuses_local_only_options(tmp_path, messy, capsys):
    assert _cli("dedup", messy, "-o", tmp_path / "o.jsonl", "--compat", "datasketch", "--executor", "ray") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--compat datasketch needs --executor local" in err[0]
    assert not list(tmp_path.iterdir())


SHORT_DOCS = [  # two documents sharing concepts (tides, Moon, gravity, Sun): one Level-3 walk
    ("tides", "Tides are the rise and fall of sea levels caused by the gravity of the Moon and the Sun. "
              "Most coasts see two high tides and two low tides every day."),
    ("moon", "The Moon orbits the Earth once every 27 days. Its gravity pulls on the oceans and raises the "
             "tides, and its phases change as the Sun lights different sides."),
]


def _rows(table) -> str:
    return json.dumps(table.to_pylist(), default=str)  # NaN == NaN as text


def test_synth_command_on_ray_equals_local(tmp_path, executor, monkeypatch):
    """Every generation call of a synthesis made on Ray actor pools — each document batch's
    candidates, the Level-3 walk batch's questions, each part's answers and QA — with only
    the ordered filter (and evolution, none here) on the driver gives the records, rejects
    and token counts a local run gives, and the driver never loads the model.
    Tiny on purpose: 2 short documents, Levels 1-3, 12 new tokens per request."""
    import pyarrow.parquet as pq

    from fastsynth.cli import synth as synth_cli

    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in SHORT_DOCS))
    common = ["--batch-docs", "1", "--max-tokens", "12", "--no-embeddings"]
    assert _cli("synth", src, "-o", tmp_path / "local", *common) == 0
    made, loads = [], []
    real_gen, real_cached = synth_cli._gen, synth.cached_generator
    monkeypatch.setattr(synth_cli, "_gen", lambda *a, **k: made.append(a) or real_gen(*a, **k))
    monkeypatch.setattr(synth, "cached_generator", lambda c: loads.append(c) or real_cached(c))
    assert _cli("synth", src, "-o", tmp_path / "ray", *common, "--executor", "ray",
                "--ray-address", _address(), "--gen-actors", "1") == 0
    # the driver loaded no model (the monkeypatches live in this process only, not the actors')
    assert made == [] and loads == []
    for sub in ("qa", "rejects", "concepts"):
        names = sorted(p.name for p in (tmp_path / "local" / sub).glob("*.parquet"))
        assert names and names == sorted(p.name for p in (tmp_path / "ray" / sub).glob("*.parquet"))
        for n in names:
            assert _rows(pq.read_table(tmp_path / "local" / sub / n)) == \
                _rows(pq.read_table(tmp_path / "ray" / sub / n)), f"{sub}/{n}"
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("local", "ray"))
    assert a["requested_questions"] == b["requested_questions"] and a["yield"] == b["yield"]
    assert a["rejections"] == b["rejections"]
    ta, tb = a["tokens"], b["tokens"]
    assert (ta["prompt"], ta["completion"], ta["requests"]) == (tb["prompt"], tb["completion"], tb["requests"])
    m = json.loads((tmp_path / "local" / "manifest.json").read_text())["parts"]
    assert m["walks-00000"]["calls"]["requests"] >= 1  # a Level-3 walk batch was asked
    # concepts, Level-1 and Level-2 questions of 2 documents, the walk's questions, answers
    assert ta["requests"] >= 7 and "answer" in json.dumps(a["rejections"]) + json.dumps(a["yield"])
    assert not (tmp_path / "ray" / "gen").exists()  # the generation parts are swept


def test_tokenize_command_on_ray_equals_local(tmp_path, messy, executor):
    """A trained BPE (on the driver), parts of 40 documents encoded on Ray, small shards:
    the shard set (every shard, its index, manifest, tokenizer) is byte-identical."""
    common = ["--tokenizer", "bpe:300", "--on-error", "skip", "--batch-size", "40", "--shard-tokens", "6000"]
    assert _cli("tokenize", messy, "-o", tmp_path / "local", *common) == 0
    assert _cli("tokenize", messy, "-o", tmp_path / "ray", *common, "--executor", "ray",
                "--ray-address", _address()) == 0
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert sum(n.endswith(".bin") for n in names) >= 3 and "rejects.jsonl" in names
    assert names == sorted(p.name for p in (tmp_path / "ray").iterdir())
    assert [n for n in names if (tmp_path / "local" / n).read_bytes() != (tmp_path / "ray" / n).read_bytes()] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local", "ray"]  # the work directory is swept
