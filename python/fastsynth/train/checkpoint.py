"""Training checkpoints: model, optimizer, scheduler, loader position and RNG states.

Layout (docs/training.md, "Checkpoints")::

    OUT/checkpoints/step_000400/
        meta.json        step, the TrainConfig, world size, metrics of the step
        state.pt         model + optimizer + scheduler tensors (one process)
        dcp/             the same through torch.distributed.checkpoint (several processes)
        extra_rank0.json loader state and RNG states of each rank (JSON, no pickle)

A checkpoint is written into ``.step_000400.tmp-<pid>/`` and renamed into place once
complete (``os.replace`` of a folder is atomic on POSIX), so a process killed mid-write
leaves either the previous checkpoints or the new one, never half of one. ``state.pt``
holds tensors and plain containers only and loads with ``weights_only=True``.

Resume is bit-exact on the CPU: after loading, the next step sees the same batch, the same
RNG draws and the same optimizer moments as the uninterrupted run would have.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastsynth.errors import ConfigError, InputError
from fastsynth.train.config import TrainConfig, config_differences

CHECKPOINT_DIR = "checkpoints"
_PREFIX = "step_"


def step_dir(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / CHECKPOINT_DIR / f"{_PREFIX}{step:06d}"


def latest(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder under ``out_dir`` (None if there is none)."""
    root = Path(out_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return None
    done = sorted(p for p in root.iterdir()
                  if p.is_dir() and p.name.startswith(_PREFIX) and (p / "meta.json").is_file())
    return done[-1] if done else None


# ------------------------------------------------------------------ JSON-safe extras
def _to_json(x: Any) -> Any:
    """Loader/RNG state -> JSON (numpy arrays and scalars tagged, tuples kept as lists)."""
    if isinstance(x, np.ndarray):
        return {"__ndarray__": x.tolist(), "dtype": str(x.dtype)}
    if isinstance(x, torch.Tensor):
        return {"__tensor__": x.tolist(), "dtype": str(x.dtype).removeprefix("torch.")}
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, dict):
        return {"__dict__": [[_to_json(k), _to_json(v)] for k, v in x.items()]}
    if isinstance(x, (list, tuple)):
        return {"__tuple__" if isinstance(x, tuple) else "__list__": [_to_json(v) for v in x]}
    return x


def _from_json(x: Any) -> Any:
    if isinstance(x, dict):
        if "__ndarray__" in x:
            return np.asarray(x["__ndarray__"], dtype=x["dtype"])
        if "__tensor__" in x:
            return torch.tensor(x["__tensor__"], dtype=getattr(torch, x["dtype"]))
        if "__dict__" in x:
            return {_from_json(k): _from_json(v) for k, v in x["__dict__"]}
        if "__tuple__" in x:
            return tuple(_from_json(v) for v in x["__tuple__"])
        if "__list__" in x:
            return [_from_json(v) for v in x["__list__"]]
    return x


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (when present) CUDA generator states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------ save / load
def save(out_dir: str | Path, step: int, *, config: TrainConfig, model: torch.nn.Module,
         optimizer: torch.optim.Optimizer, scheduler: Any, loader_state: Any,
         metrics: dict[str, Any], keep: int = 2) -> Path:
    """Write the checkpoint of ``step`` atomically; keep the newest ``keep``. Returns its folder.

    Under ``torch.distributed`` every rank must call this (the tensors go through
    torch.distributed.checkpoint; each rank writes its own loader/RNG extras).
    """
    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if dist else 0
    world = torch.distributed.get_world_size() if dist else 1
    final = step_dir(out_dir, step)
    # every rank writes into the same temp folder: rank 0's pid names it
    pid = [os.getpid()]
    if dist:
        torch.distributed.broadcast_object_list(pid, src=0)
    tmp = final.with_name(f".{final.name}.tmp-{pid[0]}")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    if dist:
        torch.distributed.barrier()
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict
        msd, osd = get_state_dict(model, optimizer)
        dcp.save({"model": msd, "optimizer": osd}, checkpoint_id=str(tmp / "dcp"))
    else:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict()}, tmp / "state.pt")
    extra = {"loader": loader_state, "rng": rng_state(), "scheduler": scheduler.state_dict()}
    with open(tmp / f"extra_rank{rank}.json", "w", encoding="utf-8") as f:
        json.dump(_to_json(extra), f)
    if dist:
        torch.distributed.barrier()
    if rank == 0:
        meta = {"step": step, "world_size": world, "config": config.as_dict(),
                "metrics": metrics}
        with open(tmp / "meta.json", "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1, default=str)
        for p in tmp.iterdir():
            if p.is_file():
                fd = os.open(p, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
        if final.exists():          # a rerun of the same step replaces it
            shutil.rmtree(final)
        os.replace(tmp, final)
        root = final.parent
        done = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX))
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.iterdir():    # temp folders of killed writers
            if stale.name.startswith(".") and ".tmp-" in stale.name and stale != tmp:
                shutil.rmtree(stale, ignore_errors=True)
    if dist:
        torch.distributed.barrier()
    return final


def read_meta(path: str | Path) -> dict[str, Any]:
    p = Path(path) / "meta.json"
    try:
        with open(p, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"unreadable checkpoint metadata: {e}", source=str(p)) from None


def check_compatible(path: str | Path, config: TrainConfig, world_size: int = 1) -> dict[str, Any]:
    """The checkpoint's metadata; :class:`ConfigError` naming every difference when the
    checkpoint was written by another model or configuration (or world size)."""
    meta = read_meta(path)
    diffs = config_differences(meta.get("config", {}), config.as_dict())
    if meta.get("world_size", 1) != world_size:
        diffs.append(f"world_size: {meta.get('world_size', 1)} -> {world_size}")
    if diffs:
        raise ConfigError(f"checkpoint {path} was written by another configuration; "
                          f"refusing to resume. Differences (checkpoint -> now): "
                          + "; ".join(diffs))
    return meta


def load(path: str | Path, *, config: TrainConfig, model: torch.nn.Module,
         optimizer: torch.optim.Optimizer, scheduler: Any) -> tuple[dict[str, Any], Any]:
    """Restore a checkpoint into the live objects (and the RNG states).

    Returns ``(meta, loader_state)``. Refuses (``ConfigError``) a checkpoint of another
    configuration, naming the differences.
    """
    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if dist else 0
    world = torch.distributed.get_world_size() if dist else 1
    path = Path(path)
    meta = check_compatible(path, config, world)
    if dist:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
        msd, osd = get_state_dict(model, optimizer)
        state = {"model": msd, "optimizer": osd}
        dcp.load(state, checkpoint_id=str(path / "dcp"))
        set_state_dict(model, optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"])
    else:
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    with open(path / f"extra_rank{rank}.json", encoding="utf-8") as f:
        extra = _from_json(json.load(f))
    scheduler.load_state_dict(extra["scheduler"])
    set_rng_state(extra["rng"])
    return meta, extra["loader"]
