"""The Ray executor: each part of a Map phase is one Ray task (or one call on a pool of
actors), on a local Ray started for the run or on an existing cluster.

It replaces only :meth:`fastsynth.run.executor.LocalExecutor.map_parts`: the driver
(this process) still lists the parts, and is the only process that writes the manifest.
A part counts once its files are renamed into place (by the worker, through
:mod:`fastsynth.atomic`) **and** the driver has recorded the returned
:class:`~fastsynth.run.rundir.PartResult` in the manifest — at-least-once work,
exactly-once output (docs/scale.md, "Ray executor"). What happens to a part:

* it runs as ``fn(config, part)`` in a Ray worker; a worker process that dies (killed,
  out of memory, node lost) or an unexpected exception makes Ray run the part again, up
  to ``max_retries`` more times. A :class:`~fastsynth.errors.FastsynthError` (bad input,
  bad config) is deterministic and is not retried;
* every attempt appends JSON lines to ``RUN/logs/<stage>/<phase>/<part>.jsonl``: start
  (pid, host, the GPU ids Ray gave the worker if any), then done (seconds, peak RSS,
  counts) or failed (the error);
* a part asking for resources no node has (``num_gpus=1`` on CPU nodes) is refused before
  any is submitted on a local Ray, and warned about on a joined cluster (an autoscaler
  may add the node), rather than left pending without a word;
* the driver records results in the order they return, shows a progress bar, and names
  the parts still running when none finished for ``stall_seconds``;
* when a part fails for good, no new parts are submitted, the ones in flight are waited
  for and recorded, and :class:`~fastsynth.run.rundir.RunError` names the stage and part:
  re-running the same command continues from the recorded parts.

Declarations on a :class:`~fastsynth.run.stage.Map` phase (read with ``getattr``, so
phases without them get the defaults): ``resources`` — Ray resources of one part, e.g.
``{"num_cpus": 2}`` or ``{"num_gpus": 1}`` (default one CPU); ``actors`` — 0 runs each part
as a task, N > 0 runs the parts on a pool of N long-lived actors, so that what ``fn``
keeps per process (a loaded model, cached by the stage's own code) is loaded once per
actor rather than once per part. Inside :meth:`RayExecutor.stage_scope` (``run_stage``
opens one per stage) the Map phases of the stage that ask for the same pool share it, so
the model loads once per actor for the whole stage; the scope's end kills the pool.
Either may also be a function of the stage's config
(a setting such as ``synth.gen_actors``). A config with a ``threads`` field left at ``None``
("all cores") runs each part with ``threads`` = the part's CPUs, so parallel parts on
one node do not oversubscribe it.

Ray is the optional extra ``fastsynth[ray]``; nothing here imports it until an executor
starts.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

from fastsynth.errors import ConfigError, DependencyError, FastsynthError
from fastsynth.progress import progress
from fastsynth.run.rundir import PartResult, RunError
from fastsynth.run.stage import Map, Part

#: Linux limits AF_UNIX socket paths to 107 bytes; Ray puts its sockets at
#: ``<temp_dir>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store``.
SOCKET_PATH_LIMIT = 107
_SESSION_TAIL = len("/session_2026-11-26_14-07-17_164324_4194304/sockets/plasma_store")


def log_path(part: Part) -> Path:
    """Where the attempts of ``part`` are logged (JSON lines)."""
    return Path(part.root) / "logs" / part.stage / part.phase / f"{part.id}.jsonl"


def _log(path: Path, event: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"t": round(time.time(), 3), **event}, sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))  # one write per line: attempts never interleave
    finally:
        os.close(fd)


def _peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def _gpu_ids() -> list[str]:
    """The GPUs Ray gave this worker (what its CUDA_VISIBLE_DEVICES names), so that a part's
    log says which card ran it; empty outside Ray or without GPUs."""
    ray = sys.modules.get("ray")  # imported in every Ray worker; never imported here
    if ray is None or not ray.is_initialized():
        return []
    return [str(g) for g in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]


def run_part(fn: Callable[[Any, Part], PartResult], config: Any, part: Part) -> tuple[str, Any]:
    """Run one part in a worker, logging the attempt. Returns ``("ok", PartResult)`` or
    ``("error", message)`` for a deterministic fastsynth error (not worth a retry); any
    other exception propagates, so Ray retries the part."""
    log = log_path(part)
    start = {"event": "start", "pid": os.getpid(), "host": socket.gethostname()}
    gpus = _gpu_ids()
    if gpus:
        start["gpus"] = gpus
    _log(log, start)
    t0 = time.perf_counter()
    try:
        res = fn(config, part)
    except FastsynthError as e:
        _log(log, {"event": "failed", "retry": False, "error": f"{type(e).__name__}: {e}"})
        return "error", str(e)
    except BaseException as e:
        _log(log, {"event": "failed", "retry": True, "error": f"{type(e).__name__}: {e}",
                   "traceback": traceback.format_exc(limit=20)})
        raise
    _log(log, {"event": "done", "seconds": round(time.perf_counter() - t0, 4),
               "peak_rss_mb": _peak_rss_mb(), "n_in": res.n_in, "n_out": res.n_out,
               "n_rejected": res.n_rejected})
    return "ok", res


class PartActor:
    """A long-lived worker of an actor pool. It keeps the config it was made with (what
    chooses the model) and, per function, the first copy it received: whatever that
    function caches per process (a loaded model) survives from one part to the next and
    from one phase of the stage to the next (docs/scale.md, "Generation on an actor pool").

    ``run(key, fn_box, part)``: ``key`` names the function within the pool's stage;
    ``fn_box`` is a one-element list holding the function's object reference, fetched
    only the first time this process sees ``key`` (a list, so Ray does not resolve it
    for every call). A restarted actor starts with no functions and fetches them again."""

    def __init__(self, config: Any):
        self.config = config
        self.fns: dict[str, Callable[[Any, Part], PartResult]] = {}

    def run(self, key: str, fn_box: list, part: Part) -> tuple[str, Any]:
        fn = self.fns.get(key)
        if fn is None:
            import ray

            fn = self.fns[key] = ray.get(fn_box[0])
        return run_part(fn, self.config, part)

    def pid(self) -> int:
        return os.getpid()


class ActorPool:
    """``n`` :class:`PartActor` s made with one config and one set of Ray resources, shared
    by the Map phases of one stage that ask for the same (see
    :meth:`RayExecutor.stage_scope`). At most one part runs on an actor at a time, and
    parts go only to actors that have started: an actor the cluster has no room for
    (``gen_actors = 2`` with ``gen_gpus = 1`` on a one-GPU machine) stays in ``starting``
    and holds no part, so the stage runs on the actors that fit instead of leaving a part
    queued forever behind one that never starts. (An actor that died for good fails its
    part, which stops the phase and so the stage, whose scope then kills the pool: no
    later part is ever sent to it.)"""

    def __init__(self, ray: Any, options: dict, config: Any, n: int):
        self._ray = ray
        cls = ray.remote(PartActor).options(**options)
        self.config = config
        self.demand = ray_demand(options)
        self.actors = [cls.remote(config) for _ in range(n)]
        self.starting: dict[Any, Any] = {a.pid.remote(): a for a in self.actors}  # ready ref -> actor
        self.free: list[Any] = []
        self.start_errors: list[str] = []
        self.noted = False                             # the "ran on k of n actors" line was shown
        self._owner: dict[Any, Any] = {}
        self._fns: dict[int, tuple[str, list]] = {}   # id(fn) -> (key, [ObjectRef])
        self._keep: list[Callable] = []                # the functions behind those ids

    def started(self, ref: Any) -> None:
        """``ref`` (a key of ``starting``) has returned: its actor is up and free, or could
        not start (its error kept in ``start_errors``)."""
        actor = self.starting.pop(ref)
        try:
            self._ray.get(ref)
        except self._ray.exceptions.RayError as e:
            self.start_errors.append(error_line(e))
            return
        self.free.append(actor)

    def submit(self, fn: Callable, part: Part, retry_exceptions: bool) -> Any:
        """Run ``fn(config, part)`` on a free actor; the result's object reference."""
        if not self.free:  # the driver sends a part only when an actor is free
            raise RuntimeError("no free actor in the pool")
        if id(fn) not in self._fns:  # shipped once per stage, fetched once per actor process
            key = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', 'fn')}#{len(self._fns)}"
            self._fns[id(fn)] = (key, [self._ray.put(fn)])
            self._keep.append(fn)
        key, box = self._fns[id(fn)]
        actor = self.free.pop()
        ref = actor.run.options(retry_exceptions=retry_exceptions).remote(key, box, part)
        self._owner[ref] = actor
        return ref

    def release(self, ref: Any) -> None:
        """``ref`` has returned: its actor is free again."""
        self.free.append(self._owner.pop(ref))

    def kill(self) -> None:
        """End every actor (and the models they hold)."""
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors, self.free, self.starting = [], [], {}


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit): ")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def error_line(e: BaseException) -> str:
    """One line for a Ray error: the exception the part or actor raised (a task's
    ``cause``; for an actor whose constructor failed, the last ``SomeError: ...`` line of
    the traceback Ray quotes), else the error's first line; at most 300 characters."""
    cause = getattr(e, "cause", None)
    text = _ANSI.sub("", f"{type(cause).__name__}: {cause}" if cause is not None else f"{type(e).__name__}: {e}")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    raised = [ln for ln in lines[1:] if _EXCEPTION_LINE.match(ln)]
    return (raised[-1] if cause is None and raised else lines[0] if lines else type(e).__name__)[:300]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise DependencyError("ray", "ray", "--executor ray") from None
    return ray


def temp_dir_for(root: str | os.PathLike) -> tuple[Path, str | None]:
    """Ray's temp dir for a local Ray of the run at ``root``: ``RUN/ray``, unless Ray's
    socket paths under it would pass the 107-byte AF_UNIX limit; then a short folder in
    the system temp dir, linked from ``RUN/ray``, and a note saying so."""
    want = Path(root).resolve() / "ray"
    if len(os.fsencode(str(want))) + _SESSION_TAIL <= SOCKET_PATH_LIMIT:
        return want, None
    short = Path(tempfile.mkdtemp(prefix="fsray-", dir="/tmp" if os.path.isdir("/tmp") else None))
    try:
        want.parent.mkdir(parents=True, exist_ok=True)
        if want.is_symlink():
            want.unlink()
        if not want.exists():
            want.symlink_to(short, target_is_directory=True)
    except OSError:
        pass
    return short, (f"ray: {want} is too long a path for Ray's sockets ({SOCKET_PATH_LIMIT}-byte "
                   f"limit); its temp dir and logs are in {short}")


def remove_fallback_temp_dir(root: str | os.PathLike, short: Path) -> None:
    """Remove the short temp folder :func:`temp_dir_for` made outside the run (Ray's session
    files and raylet logs; the parts' own logs live in the run directory) and the ``RUN/ray``
    link to it, so that a finished run leaves nothing behind in the system temp dir."""
    shutil.rmtree(short, ignore_errors=True)
    link = Path(root).resolve() / "ray"
    try:
        if link.is_symlink() and Path(os.readlink(link)) == short:
            link.unlink()
    except OSError:
        pass


def check_address(address: str, timeout: float = 5.0) -> None:
    """ConfigError unless something accepts TCP connections at ``address``
    (``host:port`` or ``ray://host:port``); Ray itself would retry for minutes."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"--ray-address {address!r}: expected HOST:PORT (the head node's GCS "
                          "address, e.g. 10.0.0.1:6379) or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ConfigError(f"--ray-address {address}: no Ray cluster reachable there "
                          f"({e.strerror or e}); start one with `ray start --head` or leave out "
                          "--ray-address to run on a local Ray") from None


class RayExecutor:
    """Run Map phases on Ray. ``address``: an existing cluster (``HOST:PORT``,
    ``ray://HOST:PORT`` or ``auto``); None starts a local Ray with ``num_cpus`` CPUs (None:
    all) and its temp dir in the run directory. ``max_retries``: extra attempts of a part
    after a crash or an unexpected error. ``max_in_flight``: parts submitted at once
    (None: twice the cluster's CPUs; bounds what the driver tracks, not the cluster's work)."""

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, max_retries: int = 3,
                 max_in_flight: int | None = None, stall_seconds: float = 300.0,
                 show_progress: bool | None = None):
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"max_retries must be a non-negative integer, got {max_retries!r}")
        if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1):
            raise ConfigError(f"num_cpus must be a positive integer, got {num_cpus!r}")
        if max_in_flight is not None and (not isinstance(max_in_flight, int) or max_in_flight < 1):
            raise ConfigError(f"max_in_flight must be a positive integer, got {max_in_flight!r}")
        self.address = address
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.max_in_flight = max_in_flight
        self.stall_seconds = stall_seconds
        self.show_progress = show_progress
        self.temp_dir: Path | None = None
        self._started_here = False
        self._checked = False
        self._fallback: tuple[Path, Path] | None = None   # (run root, short temp dir) to remove
        self._pools: list[tuple[tuple, ActorPool]] | None = None  # inside stage_scope(): (key, pool)
        self._feasible: set[tuple] = set()  # (stage, phase, demand) already checked against the nodes

    # -- cluster ------------------------------------------------------------------------
    def start(self, root: str | os.PathLike) -> None:
        """Connect to the cluster (or start a local Ray for the run at ``root``) and check
        that its workers have this fastsynth. Called by the first :meth:`map_parts`."""
        ray = _import_ray()
        if not ray.is_initialized():
            import logging

            common = {"include_dashboard": False, "log_to_driver": False,
                      "logging_level": logging.WARNING}
            if self.address is not None:
                check_address(self.address)
                try:
                    ray.init(address=self.address, **common)
                except (ConnectionError, RuntimeError, ValueError) as e:
                    raise ConfigError(f"--ray-address {self.address}: cannot join the Ray cluster "
                                      f"there: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
            else:
                self.temp_dir, note = temp_dir_for(root)
                if note:
                    self._fallback = (Path(root), self.temp_dir)
                    print(note, file=sys.stderr)
                for attempt in (1, 2):
                    try:
                        ray.init(num_cpus=self.num_cpus, _temp_dir=str(self.temp_dir), **common)
                        break
                    except Exception as e:  # Ray waits a fixed 30 s for its raylet: a loaded
                        ray.shutdown()       # machine can miss that once (seen at load 17 on 2 cores)
                        if attempt == 2 or "timed out during startup" not in str(e):
                            raise
                        print("ray: the local Ray did not start within its 30 s; trying once more",
                              file=sys.stderr)
                self._started_here = True
        if not self._checked:
            # A Ray started here runs its workers with this Python and this environment, so
            # they import this very fastsynth: only a joined cluster's nodes need the probe
            # (~0.6 s of a local run's start-up: a worker started and an import, measured)
            if not self._started_here:
                self._check_workers(ray)
            self._checked = True

    def shutdown(self) -> None:
        """Stop the local Ray this executor started (a joined cluster keeps running)."""
        if self._started_here:
            _import_ray().shutdown()
            self._started_here = False
            self._checked = False
        self._feasible.clear()  # another start may join another cluster
        if self._fallback is not None:
            remove_fallback_temp_dir(*self._fallback)
            self._fallback = None

    @contextlib.contextmanager
    def stage_scope(self) -> Iterator[None]:
        """The actor pools that :meth:`map_parts` makes inside this block are shared by its
        Map phases and killed when it ends (normally or by an error): a pool is reused by a
        later phase that asks for the same size, the same Ray resources and an equal config
        (the config chooses the model the actors cache), so synthesis's gen, walks and
        answer phases load the model once per actor, not once per phase. ``run_stage``
        opens one per stage, so no actor outlives its stage. Outside a scope each phase
        makes its own pool and kills it at its end. Nested scopes share the outer one."""
        if self._pools is not None:
            yield
            return
        self._pools = []
        try:
            yield
        finally:
            pools, self._pools = self._pools, None
            for _key, pool in pools:
                pool.kill()

    @property
    def held_actors(self) -> int:
        """Actors the open stage scope holds (0 outside a scope: none outlives its stage)."""
        return sum(len(pool.actors) for _key, pool in self._pools or ())

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def _check_workers(self, ray: Any) -> None:
        """Every alive node runs a probe; a node whose Python lacks fastsynth (or has
        another version) is named in one ConfigError before any part runs."""
        from fastsynth._version import __version__

        def probe() -> tuple[str, str | None]:  # nested: pickled by value, needs no fastsynth
            import socket as s
            try:
                from fastsynth._version import __version__ as v
            except ImportError as e:
                return s.gethostname(), f"missing ({e})"
            return s.gethostname(), v

        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = [ray.remote(probe).options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote() for n in nodes]
        try:
            found = ray.get(refs, timeout=300)
        except ray.exceptions.GetTimeoutError:
            raise ConfigError("ray: the cluster's workers did not answer a probe within 300 s") from None
        bad = [f"{host}: fastsynth {v}" for host, v in found if v != __version__]
        if bad:
            raise ConfigError(f"ray: the workers need fastsynth {__version__} installed (pip install "
                              f"'fastsynth[ray]=={__version__}' on every node); found {'; '.join(bad)}")

    # -- parts --------------------------------------------------------------------------
    def map_parts(self, fn: Callable[[Any, Part], PartResult], config: Any, parts: list[Part],
                  record: Callable[[Part, PartResult], None], phase: Any = None) -> None:
        """Run ``fn(config, part)`` for every part on Ray; ``record(part, result)`` on the
        driver as each returns. ``phase``: the Map phase, for its ``resources``/``actors``
        declarations (looked up among the run's stages when not given)."""
        if not parts:
            return
        self.start(parts[0].root)
        ray = _import_ray()
        if phase is None:
            phase = find_phase(parts[0].stage, parts[0].phase, fn)
        resources, actors = phase_demand(phase, config)
        config = _with_threads(config, resources["num_cpus"])
        where = f"{parts[0].stage}/{parts[0].phase}"
        self._check_feasible(ray, resources, parts[0].stage, parts[0].phase)
        pool: ActorPool | None = None
        if actors:
            pool = self._pool(ray, resources, actors, config)
            dispatch: _Dispatch = _PoolDispatch(pool, fn)
        else:
            task = ray.remote(run_part).options(max_retries=self.max_retries, retry_exceptions=True,
                                                **resources)
            dispatch = _TaskDispatch(task, ray.put(fn), ray.put(config),  # shipped once, not per part
                                     self.max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1))))
        try:
            self._drive(ray, dispatch, parts, record, where)
        finally:
            if pool is not None and self._pools is None:  # no stage scope: the pool is this phase's
                pool.kill()

    def check_stages(self, root: str | os.PathLike, stages: list[tuple[Any, Any]]) -> None:
        """Before a run's first part: every Map phase of ``stages`` (``(Stage, config)``
        pairs) asks for resources some node has (:meth:`_check_feasible`), so that a
        setting such as ``synth.gen_gpus = 1`` on CPU nodes fails in seconds, not after
        the stages before it ran."""
        self.start(root)
        ray = _import_ray()
        for stage, config in stages:
            for phase in stage.phases:
                if isinstance(phase, Map):  # Global steps run on the driver
                    self._check_feasible(ray, phase_demand(phase, config)[0], stage.name, phase.name)

    def _check_feasible(self, ray: Any, resources: dict, stage: str, phase: str) -> None:
        """A part that no node of the cluster could ever run (``num_gpus=1`` where no node
        has a GPU) would wait forever — the "stuck at 0%" of a misconfigured job. On the
        local Ray started for the run nothing adds nodes later: ConfigError naming the
        stage, the phase and what is missing. A joined cluster may have an autoscaler that
        adds such a node on demand: a warning, and the wait goes on."""
        need = ray_demand(resources)
        key = (stage, phase, tuple(sorted(need.items())))
        if key in self._feasible:  # checked by check_stages, or by an earlier phase's run
            return
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if fits_some_node(need, nodes):
            self._feasible.add(key)
            return
        have = ", ".join(sorted({_show_demand({k: n.get(k, 0.0) for k in need}) for n in nodes})) \
            or "no alive node"
        what = (f"stage {stage}, phase {phase}: each part asks Ray for {_show_demand(need)}, "
                f"but no node of the cluster has that (nodes: {have})")
        if self._started_here:
            raise ConfigError(f"{what}; lower the stage's resource settings (e.g. synth.gen_gpus, "
                              "--gen-gpus) or run on a cluster with such nodes (--ray-address)")
        print(f"ray: {what}; its parts wait until the cluster adds such a node", file=sys.stderr)
        self._feasible.add(key)  # warned once, not again when the phase starts

    def _pool(self, ray: Any, resources: dict, n: int, config: Any) -> ActorPool:
        """The stage scope's pool of ``n`` actors with ``resources`` and ``config`` (made on
        first use), or a new pool for this phase alone outside a scope."""
        key = (n, sorted(resources.items()))
        for k, pool in self._pools or ():
            if k == key and _same(pool.config, config):
                return pool
        pool = ActorPool(ray, {"max_restarts": self.max_retries, "max_task_retries": self.max_retries,
                               **resources}, config, n)
        if self._pools is not None:
            self._pools.append((key, pool))
        return pool

    def _drive(self, ray: Any, dispatch: "_Dispatch", parts: list[Part], record: Callable,
               where: str) -> None:
        todo = list(reversed(parts))
        running: dict[Any, tuple[Part, float]] = {}
        failure: str | None = None
        with progress(total=len(parts), desc=f"{where} [ray]", unit="part", enabled=self.show_progress) as bar:
            while todo or running:
                while todo and failure is None and dispatch.can_submit(len(running)):
                    part = todo.pop()
                    running[dispatch.submit(part)] = (part, time.monotonic())
                starting = dispatch.starting() if todo and failure is None else []
                if not running and not starting:
                    if todo and failure is None:
                        failure = dispatch.no_worker(where)
                    break
                ready, _ = ray.wait(list(running) + starting, num_returns=1, timeout=self.stall_seconds)
                if not ready:
                    self._report_stall(running, dispatch, where)
                    continue
                for ref in ready:
                    if ref not in running:
                        dispatch.started(ref)
                        continue
                    part, _t0 = running.pop(ref)
                    dispatch.returned(ref)
                    err = self._collect(ray, ref, part, record)
                    if err is not None and failure is None:
                        failure = err
                    bar.update(1)
        note = dispatch.note(where)
        if note:
            print(note, file=sys.stderr)
        if failure is not None:
            raise RunError(failure)

    def _collect(self, ray: Any, ref: Any, part: Part, record: Callable) -> str | None:
        """Record one returned part; the error line if it failed for good."""
        where = f"stage {part.stage}, part {part.phase}/{part.id}"
        resume = "finished parts are recorded: re-run the same command to continue"
        try:
            status, value = ray.get(ref)
        except ray.exceptions.RayError as e:
            what = error_line(e)
            return (f"{where} failed on each of its {self.max_retries + 1} attempts (last: "
                    f"{what}; log: {log_path(part)}); {resume}")
        if status == "error":
            return f"{where}: {value} ({resume})"
        try:
            record(part, value)
        except FastsynthError as e:
            return str(e) if str(e).startswith("stage ") else f"{where}: {e}"
        return None

    def _report_stall(self, running: dict[Any, tuple[Part, float]], dispatch: "_Dispatch",
                      where: str) -> None:
        if not running:
            print(f"ray: {dispatch.no_worker(where)}; still waiting", file=sys.stderr)
            return
        now = time.monotonic()
        oldest = sorted(running.values(), key=lambda pt: pt[1])[:5]
        names = ", ".join(f"{p.phase}/{p.id} ({now - t:.0f} s)" for p, t in oldest)
        print(f"ray: no part of stage {oldest[0][0].stage} finished in {self.stall_seconds:.0f} s; "
              f"running: {names}{' ...' if len(running) > 5 else ''} (logs: "
              f"{log_path(oldest[0][0]).parent})", file=sys.stderr)


class _Dispatch:
    """Where :meth:`RayExecutor._drive` sends a phase's parts: Ray tasks, or a pool's actors."""

    def can_submit(self, n_running: int) -> bool:
        raise NotImplementedError

    def submit(self, part: Part) -> Any:
        raise NotImplementedError

    def returned(self, ref: Any) -> None:
        """A part's ``ref`` has returned."""

    def starting(self) -> list:
        """Object references that say a worker has started (actors not yet up)."""
        return []

    def started(self, ref: Any) -> None:
        """One of :meth:`starting`'s references has returned."""

    def no_worker(self, where: str) -> str:
        """Why parts are left with nothing that could run them."""
        return f"{where}: no worker could run its parts"

    def note(self, where: str) -> str | None:
        """A line for the user after the phase, if any."""
        return None


class _TaskDispatch(_Dispatch):
    def __init__(self, task: Any, fn_ref: Any, conf_ref: Any, limit: int):
        self.task, self.fn_ref, self.conf_ref, self.limit = task, fn_ref, conf_ref, limit

    def can_submit(self, n_running: int) -> bool:
        return n_running < self.limit

    def submit(self, part: Part) -> Any:
        return self.task.remote(self.fn_ref, self.conf_ref, part)


class _PoolDispatch(_Dispatch):
    def __init__(self, pool: ActorPool, fn: Callable):
        self.pool, self.fn = pool, fn

    def can_submit(self, n_running: int) -> bool:
        return bool(self.pool.free)

    def submit(self, part: Part) -> Any:
        return self.pool.submit(self.fn, part, retry_exceptions=True)

    def returned(self, ref: Any) -> None:
        self.pool.release(ref)

    def starting(self) -> list:
        return list(self.pool.starting)

    def started(self, ref: Any) -> None:
        self.pool.started(ref)

    def _room(self) -> str:
        return (f"each asks Ray for {_show_demand(self.pool.demand)}, the cluster has "
                f"{_show_demand(_cluster_total())}")

    def _errors(self) -> str:
        return "; ".join(sorted(set(self.pool.start_errors)))

    def no_worker(self, where: str) -> str:
        stage = where.split("/")[0]
        if self.pool.starting:
            return f"stage {stage}: no actor of its pool has started ({self._room()})"
        return f"stage {stage}: no actor of its pool could start ({self._errors() or 'unknown'})"

    def note(self, where: str) -> str | None:
        pool = self.pool
        if pool.noted or (not pool.starting and not pool.start_errors):
            return None
        pool.noted = True
        up = len(pool.actors) - len(pool.starting) - len(pool.start_errors)
        why = self._room() if pool.starting else self._errors()
        return f"ray: {where} ran on {up} of its pool's {len(pool.actors)} actors ({why})"


def _cluster_total() -> dict[str, float]:
    """The cluster's total CPUs and GPUs (what a pool's demand is compared with in messages)."""
    import ray

    total = ray.cluster_resources()
    return {k: float(total.get(k, 0.0)) for k in ("CPU", "GPU")}


def phase_demand(phase: Any, config: Any) -> tuple[dict, int]:
    """``(Ray resources of one part, actors)`` a Map ``phase`` declares for ``config``
    (either may be a function of the config, e.g. ``synth.gen_gpus``; default one CPU, no
    actors)."""
    resources, actors = getattr(phase, "resources", None), getattr(phase, "actors", 0)
    resources = dict((resources(config) if callable(resources) else resources) or {})
    resources.setdefault("num_cpus", 1)
    return resources, int((actors(config) if callable(actors) else actors) or 0)


def ray_demand(resources: dict) -> dict[str, float]:
    """Ray ``.options()`` resources (``num_cpus``, ``num_gpus``, ``memory``, custom
    ``resources``) as the node resource names Ray schedules by (``CPU``, ``GPU``, ...);
    zero amounts left out."""
    names = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}
    need = {names[k]: float(v) for k, v in resources.items() if k in names}
    need.update({k: float(v) for k, v in (resources.get("resources") or {}).items()})
    return {k: v for k, v in need.items() if v > 0}


def fits_some_node(need: dict[str, float], nodes: list[dict[str, float]]) -> bool:
    """Whether one of ``nodes`` (each node's total resources, as ``ray.nodes()`` lists
    them) has every amount of ``need``."""
    return any(all(node.get(k, 0.0) >= v for k, v in need.items()) for node in nodes)


def _show_demand(d: dict[str, float]) -> str:
    def amount(k: str, v: float) -> str:
        if k == "memory":
            return f"{v / 2**30:.1f} GiB"
        return f"{v:g}"
    return "{" + ", ".join(f"{k}: {amount(k, v)}" for k, v in sorted(d.items())) + "}"


def _same(a: Any, b: Any) -> bool:
    """Whether two configs are equal (one that cannot say gets a pool of its own)."""
    try:
        return a is b or bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. array fields: no shared pool, nothing worse
        return False


def _with_threads(config: Any, cpus: float) -> Any:
    """``config`` with ``threads`` = the part's CPUs where it says "all cores" (None)."""
    if dataclasses.is_dataclass(config) and any(f.name == "threads" for f in dataclasses.fields(config)) \
            and getattr(config, "threads") is None:
        return dataclasses.replace(config, threads=max(1, int(cpus)))
    return config


def find_phase(stage: str, phase: str, fn: Callable) -> Any:
    """The Map phase named ``phase`` of the run's stage ``stage`` whose function is
    ``fn`` (for its declarations), or None (a stage outside the run's stage list)."""
    import importlib

    try:
        mod = importlib.import_module(f"fastsynth.run.stages.{stage}")
    except ImportError:
        return None
    for ph in getattr(getattr(mod, "STAGE", None), "phases", ()):
        if getattr(ph, "name", None) == phase and getattr(ph, "fn", None) is fn:
            return ph
    return None
