"""Training metrics: one JSON line per logged step, and a progress bar on a terminal.

``OUT/metrics.jsonl`` lines (docs/training.md, "Metrics")::

    {"step": 40, "loss": 5.21, "lr": 0.003, "grad_norm": 0.8, "tokens": 163840,
     "tokens_per_s": 2400.0, "flops_per_token": 1.1e7, "mfu": null, "elapsed_s": 68.2}
    {"step": 40, "eval_loss": 5.30, "eval_tokens": 65536}

``loss`` is the mean cross-entropy (nats/token) over the targets of the optimizer step;
``tokens`` counts real (non-padding) tokens seen so far; ``tokens_per_s`` is measured over
the steps since the previous line; ``mfu`` is None when the device's peak is unknown (the
CPU). On resume the file is cut back to the checkpoint's step, so it reads as one run.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fastsynth.progress import progress


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)             # JSON has no NaN/inf; keep the value readable
    return v


class MetricsLog:
    """Append-only JSONL metrics (None path: nothing written) plus a terminal progress bar."""

    def __init__(self, path: str | Path | None, total_steps: int, *, start_step: int = 0,
                 show_progress: bool | None = None, enabled: bool = True):
        self.path = Path(path) if path is not None and enabled else None
        self.records: list[dict[str, Any]] = []
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            kept: list[str] = []
            if start_step > 0 and self.path.is_file():
                for line in self.path.read_text(encoding="utf-8").splitlines():
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        break                     # a line cut by a kill ends the valid part
                    if rec.get("step", 0) <= start_step:
                        kept.append(line)
                        self.records.append(rec)
            self.path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
            self._file = open(self.path, "a", encoding="utf-8")
        self.bar = progress(total=total_steps, desc="train", unit="step",
                            enabled=show_progress if enabled else False, initial=start_step)

    def write(self, record: dict[str, Any]) -> None:
        record = {k: _clean(v) for k, v in record.items()}
        self.records.append(record)
        if self.path is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        if "loss" in record:
            self.bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
        elif "eval_loss" in record:
            self.bar.set_postfix(eval=f"{record['eval_loss']:.3f}", refresh=False)

    def advance(self, steps: int = 1) -> None:
        self.bar.update(steps)

    def close(self) -> None:
        self.bar.close()
        if self.path is not None:
            self._file.close()
