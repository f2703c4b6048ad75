"""Histogram PNGs (matplotlib, from the ``report`` extra)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fastsynth.atomic import atomic_path
from fastsynth.errors import DependencyError


def histogram_png(values: np.ndarray, path: str | Path, *, title: str, xlabel: str,
                  band: tuple[float, float] | None = None, band_label: str = "band",
                  bins: int = 60) -> Path:
    """Write a histogram of the finite ``values`` to ``path`` (atomically), shading
    ``band`` if given. Raises DependencyError without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise DependencyError("matplotlib", "report", "the histogram PNG") from e
    path = Path(path)
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    try:
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            if band is not None:
                lo, hi = min(lo, band[0]), max(hi, band[1])
            ax.hist(finite, bins=bins, range=(lo, hi) if hi > lo else None, color="#4878a8")
        else:
            ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
        if band is not None:
            inside = int(((finite >= band[0]) & (finite <= band[1])).sum())
            ax.axvspan(band[0], band[1], color="#e8a33d", alpha=0.25, zorder=0,
                       label=f"{band_label} [{band[0]:g}, {band[1]:g}]: {inside:,} of {finite.size:,}")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("documents")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path
