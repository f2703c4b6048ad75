"""Quality scoring: gzip compression ratio, Gopher heuristics, and the filter that
combines them. Later: LLM judge and diversity measures."""
from fastsynth.quality.compression import gzip_ratio, libdeflate_available, zlib_version

__all__ = ["gzip_ratio", "libdeflate_available", "zlib_version"]
