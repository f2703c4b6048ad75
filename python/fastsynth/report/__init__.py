"""The one renderer: a :class:`Document` of blocks written as Markdown and as a
self-contained HTML page (figures embedded), plus the plots jobs put in it.

Every job renders its summary through this package (score, dedup, synth, plan and the
run's report). It sits on the ground floor: it imports nothing of fastsynth above
``errors`` and ``atomic`` (docs/architecture.md, "Floors").
"""
from fastsynth.report.document import Document

__all__ = ["Document"]
