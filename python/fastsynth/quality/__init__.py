"""Quality scoring: gzip compression ratio, Gopher heuristics, and the filter that
combines them."""
from fastsynth.quality.compression import gzip_ratio, libdeflate_available, zlib_version
from fastsynth.quality.filter import FilterResult, QualityFilter, Rule
from fastsynth.quality.heuristics import HEURISTIC_NAMES, heuristics

__all__ = [
    "gzip_ratio", "libdeflate_available", "zlib_version",
    "heuristics", "HEURISTIC_NAMES",
    "QualityFilter", "FilterResult", "Rule",
]
