"""Progress bars that show on a terminal and stay quiet otherwise (logs, CI, pipes)."""
from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def progress(total: int | float | None = None, desc: str = "", unit: str = "it",
             enabled: bool | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr, disabled unless stderr is a terminal (or ``enabled``)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, **kwargs)
