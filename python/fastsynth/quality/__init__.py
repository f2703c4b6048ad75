"""Quality scoring: gzip compression ratio, Gopher heuristics and the filter that
combines them; for generated data, an LLM judge, decontamination against evaluation
sets, and diversity measures."""
from fastsynth.quality.compression import gzip_ratio, libdeflate_available, zlib_version
from fastsynth.quality.decontam import Decontaminator
from fastsynth.quality.diversity import (concept_stats, diversity_report, embed, load_embedder,
                                         mean_pairwise_similarity, set_compression_ratio)
from fastsynth.quality.filter import FilterResult, QualityFilter, Rule
from fastsynth.quality.heuristics import HEURISTIC_NAMES, heuristics
from fastsynth.quality.judge import JUDGE_VERSION, RUBRIC, Judge, JudgeScores, parse_score, parse_verdict

__all__ = [
    "gzip_ratio", "libdeflate_available", "zlib_version",
    "heuristics", "HEURISTIC_NAMES",
    "QualityFilter", "FilterResult", "Rule",
    "Judge", "JudgeScores", "RUBRIC", "JUDGE_VERSION", "parse_score", "parse_verdict",
    "Decontaminator",
    "diversity_report", "concept_stats", "mean_pairwise_similarity", "set_compression_ratio", "embed",
    "load_embedder",
]
