"""Settings of a synthesis run (one dataclass; defaults follow the reference scenario)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from fastsynth.errors import ConfigError


@dataclass
class SynthConfig:
    """What :func:`fastsynth.synth.synthesize` does.

    Budget: ``questions_per_doc`` x (documents after chunking) questions are requested,
    split over the enabled ``levels`` in proportion to ``shares`` (Level-1/2/3 =
    30/40/30 %, the reference scenario's SynthLLM mix), renormalised over the enabled
    levels. Yields are lower: models return fewer questions than asked and QA rejects some.
    Token limits are new tokens per request; ``max_doc_chars`` bounds document text per
    prompt (see :mod:`fastsynth.synth.documents`).
    """

    levels: tuple[int, ...] = (1, 2, 3)
    shares: tuple[float, float, float] = (0.3, 0.4, 0.3)
    questions_per_doc: float = 2.0
    seed: int = 0
    batch_docs: int = 8  # documents (or walks) per resumable part
    max_doc_chars: int = 2000
    on_long: str = "chunk"
    max_chunks: int = 4
    temperature: float = 0.7  # question writing; extraction and single answers are greedy
    question_max_tokens: int = 96
    concept_max_tokens: int = 128
    answer_max_tokens: int = 128
    evolve_max_tokens: int = 64
    answer_samples: int = 1  # > 1: self-consistency over this many sampled answers
    answer_temperature: float = 0.7
    min_agreement: float = 0.51  # a strict majority of the samples must agree
    evolve_fraction: float = 0.0  # share of accepted questions sent to an Evol-Instruct operation
    judge_threshold: float | None = None  # None: no LLM judge
    near_dup_threshold: float = 0.7
    dedup: str = "auto"  # "auto": MinHash/LSH when fastsynth.dedup is present, "exact": normalised text
    decontam_ngram: int = 8
    grounded_concepts: bool = True
    # Top a document's concept list up to this many with its own key terms (RAKE) when the
    # model returns fewer; 0 turns the fallback off. 8: SynthLLM asks for 5-20 per topic, and
    # a few more than 5 leave room for the shared single words that link documents (keyterms).
    min_concepts: int = 8
    walk_temperature: float = 1.0
    retries: int = 2
    gen_batch_size: int = 8
    diversity_embeddings: bool = True
    extra: dict = field(default_factory=dict)  # recorded in the manifest, unused

    def __post_init__(self) -> None:
        self.levels = tuple(sorted(set(int(x) for x in self.levels)))
        if not self.levels or any(x not in (1, 2, 3) for x in self.levels):
            raise ConfigError(f"levels must be a non-empty subset of 1, 2, 3, got {self.levels}")
        if len(self.shares) != 3 or any(s < 0 for s in self.shares) or sum(self.shares[l - 1] for l in self.levels) <= 0:
            raise ConfigError(f"shares must be three non-negative numbers with a positive sum over the levels, "
                              f"got {self.shares}")
        self.shares = tuple(float(s) for s in self.shares)
        if self.questions_per_doc <= 0:
            raise ConfigError(f"questions_per_doc must be > 0, got {self.questions_per_doc}")
        for name in ("batch_docs", "question_max_tokens", "concept_max_tokens", "answer_max_tokens",
                     "evolve_max_tokens", "answer_samples", "gen_batch_size", "max_chunks", "decontam_ngram"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.evolve_fraction <= 1:
            raise ConfigError(f"evolve_fraction must be in [0, 1], got {self.evolve_fraction}")
        if self.judge_threshold is not None and not 1 <= self.judge_threshold <= 10:
            raise ConfigError(f"judge_threshold must be in [1, 10], got {self.judge_threshold}")
        if not 0 < self.near_dup_threshold <= 1:
            raise ConfigError(f"near_dup_threshold must be in (0, 1], got {self.near_dup_threshold}")
        if self.dedup not in ("auto", "exact"):
            raise ConfigError(f"dedup must be 'auto' or 'exact', got {self.dedup!r}")
        if self.retries < 0:
            raise ConfigError(f"retries must be >= 0, got {self.retries}")

    def level_share(self, level: int) -> float:
        total = sum(self.shares[l - 1] for l in self.levels)
        return self.shares[level - 1] / total if level in self.levels else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["levels"] = list(self.levels)
        d["shares"] = list(self.shares)
        return d
