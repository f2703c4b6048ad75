"""Small PNG charts for reports (matplotlib from the ``report`` extra, Agg backend):
bar charts and a drawing of a small graph. Each writes its file atomically."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from fastsynth.atomic import atomic_path
from fastsynth.errors import DependencyError


def _plt():
    try:
        import matplotlib
        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise DependencyError("matplotlib", "report", "report charts") from e
    return plt


def _save(fig, path: Path) -> Path:
    plt = _plt()
    try:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path


def bars_png(path: str | Path, labels: Sequence[str], series: dict[str, Sequence[float]], *,
             title: str, ylabel: str, log: bool = False) -> Path:
    """Grouped bars: one group per label, one bar per series (name -> values)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if len(series) > 1:
        ax.legend(fontsize=8)
    return _save(fig, Path(path))


def layout(n: int, edges: Sequence[tuple[int, int]], *, seed: int = 0, iters: int = 200) -> np.ndarray:
    """Force-directed positions ``(n, 2)`` in [0, 1] (Fruchterman-Reingold: springs on
    edges, repulsion between every pair; O(n^2) per step, for drawings of <= ~200 nodes)."""
    rng = np.random.default_rng(seed)
    pos = rng.random((n, 2))
    if n < 2:
        return pos
    k = 1.0 / np.sqrt(n)
    adj = np.zeros((n, n), bool)
    for a, b in edges:
        adj[a, b] = adj[b, a] = True
    t = 0.1
    for _ in range(iters):
        d = pos[:, None, :] - pos[None, :, :]
        dist = np.sqrt((d ** 2).sum(-1)) + 1e-9
        force = (k * k / dist ** 2)[..., None] * d - np.where(adj, dist / k, 0)[..., None] * d
        move = force.sum(1)
        length = np.sqrt((move ** 2).sum(-1))[:, None] + 1e-9
        pos += move / length * np.minimum(length, t)
        t *= 0.98
    pos -= pos.min(0)
    return pos / np.maximum(pos.max(0), 1e-9)


def graph_png(path: str | Path, nodes: Sequence[str], kinds: Sequence[str],
              edges: Sequence[tuple[int, int]], *, title: str, seed: int = 0) -> Path:
    """Draw a small graph: ``nodes`` (labels), ``kinds`` (one per node: a legend entry),
    ``edges`` (index pairs)."""
    plt = _plt()
    pos = layout(len(nodes), edges, seed=seed)
    fig, ax = plt.subplots(figsize=(7, 5.5), dpi=110)
    for a, b in edges:
        ax.plot(*pos[[a, b]].T, color="#bbbbbb", lw=0.6, zorder=1)
    for kind, color in zip(sorted(set(kinds)), ("#d1603d", "#4878a8", "#6a9f58", "#8e6bb0")):
        idx = [i for i, k in enumerate(kinds) if k == kind]
        ax.scatter(pos[idx, 0], pos[idx, 1], s=40 if kind == "topic" else 18, color=color, label=kind,
                   zorder=2)
    for i, label in enumerate(nodes):
        ax.annotate(label[:22], pos[i], fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set_axis_off()
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, Path(path))
