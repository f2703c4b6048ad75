"""Progress bars that show on a terminal and stay quiet otherwise (logs, CI, pipes)."""
from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm


def progress(total: int | float | None = None, desc: str = "", unit: str = "it",
             enabled: bool | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr, disabled unless stderr is a terminal (or ``enabled``)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    try:
        columns = os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        columns = 0
    # A terminal that reports a 0x0 size (fresh ptys, some CI log viewers) makes tqdm
    # draw nothing; give it a conventional size then.
    sizing = {"dynamic_ncols": True} if columns > 0 else {"ncols": 100, "nrows": 24}
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr,
                **sizing, **kwargs)
