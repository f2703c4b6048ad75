"""``--executor {local,ray}`` and ``--ray-address``: the flags every command that runs
stages takes, and the executor they choose (one definition; commands call
:func:`add_executor_arguments` when building their parser and :func:`executor_from_args`
before running)."""
from __future__ import annotations

import argparse
from typing import Any

from fastsynth.errors import ConfigError

EXECUTORS = ("local", "ray")


def add_executor_arguments(parser: argparse.ArgumentParser | Any) -> None:
    """Add ``--executor`` and ``--ray-address`` to ``parser`` (a parser or argument group)."""
    g = parser.add_argument_group("executor", "where the parts of each stage run (docs/scale.md)") \
        if isinstance(parser, argparse.ArgumentParser) else parser
    g.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: every part in this process; ray: one Ray task per part, on a local "
                        "Ray started for the run (temp dir RUN_DIR/ray; for score/dedup/tokenize/synth: "
                        "in their work directory beside OUT, docs/scale.md) or the cluster at "
                        "--ray-address (needs the ray extra: pip install 'fastsynth[ray]')")
    g.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                   help="an existing Ray cluster's address (HOST:PORT, ray://HOST:PORT or auto); its "
                        "workers need this fastsynth installed")


def executor_from_args(args: argparse.Namespace) -> Any:
    """The executor the flags ask for: a LocalExecutor or a RayExecutor (not started yet:
    it connects when its first stage runs)."""
    kind = getattr(args, "executor", "local") or "local"
    address = getattr(args, "ray_address", None)
    if kind == "local":
        if address:
            raise ConfigError("--ray-address needs --executor ray")
        from fastsynth.run.executor import LocalExecutor

        return LocalExecutor()
    if kind != "ray":
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    from fastsynth.run.ray_executor import RayExecutor, _import_ray, check_address

    _import_ray()  # a missing extra is named before any work
    if address:
        check_address(address)
    return RayExecutor(address)
