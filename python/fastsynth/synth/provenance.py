"""The output record schema: every QA pair carries where it came from.

Accepted records (``qa`` parts) and rejects (``rejects`` parts) are Arrow tables with the
schemas below. Provenance fields: ``level`` (1-3), ``source_ids`` (document ids; a chunk
of a long document is ``"<id>#<k>"``), ``concepts``/``topics`` (normalised names),
``generator_model``/``answer_model``, ``prompt_version`` (``"<prompt>/v<n>"`` ids joined
by ``+``: question prompt, then answer prompt, then evolution prompt if any) and ``seed``
(the question request's seed; ``answer_seed`` for the answer).
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import pyarrow as pa

QA_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("level", pa.int8()),
    ("question", pa.string()),
    ("answer", pa.string()),
    ("kind", pa.string()),  # original | new | combined | cross-document | evolved:<op>
    ("source_ids", pa.list_(pa.string())),
    ("concepts", pa.list_(pa.string())),
    ("topics", pa.list_(pa.string())),
    ("generator_model", pa.string()),
    ("answer_model", pa.string()),
    ("prompt_version", pa.string()),
    ("seed", pa.int64()),
    ("answer_seed", pa.int64()),
    ("answer_samples", pa.int32()),
    ("answer_agreement", pa.float64()),  # fraction of samples agreeing; NaN for one sample
    ("parent_id", pa.string()),  # the question an evolved question came from
    ("judge_score", pa.float64()),  # NaN when not judged
    ("gzip_ratio", pa.float64()),  # of "question\nanswer": compressed/original, zlib level 6
    ("metrics", pa.map_(pa.string(), pa.float64())),  # heuristics on the answer text
])

REJECT_SCHEMA = pa.schema([
    ("level", pa.int8()),
    ("stage", pa.string()),  # input | concepts | question | answer | evolve | qa | dedup | decontam | judge
    ("reason", pa.string()),
    ("source_ids", pa.list_(pa.string())),
    ("text", pa.string()),  # the raw model output or the rejected question
    ("seed", pa.int64()),
    ("prompt_version", pa.string()),
])


@dataclass
class QARecord:
    level: int
    question: str
    kind: str
    source_ids: list[str]
    generator_model: str
    prompt_version: str
    seed: int
    concepts: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    answer: str = ""
    answer_model: str = ""
    answer_seed: int = -1
    answer_samples: int = 0
    answer_agreement: float = float("nan")
    parent_id: str | None = None
    judge_score: float = float("nan")
    gzip_ratio: float = float("nan")
    metrics: dict[str, float] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            key = "\x1f".join([str(self.level), self.kind, *self.source_ids, self.question, str(self.seed)])
            self.id = f"L{self.level}-" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]

    def row(self) -> dict:
        d = asdict(self)
        d["metrics"] = list(self.metrics.items())
        return d


@dataclass
class Reject:
    level: int
    stage: str
    reason: str
    source_ids: list[str]
    text: str = ""
    seed: int = -1
    prompt_version: str = ""

    def row(self) -> dict:
        return asdict(self)


def qa_table(records: list[QARecord]) -> pa.Table:
    return pa.Table.from_pylist([r.row() for r in records], schema=QA_SCHEMA)


def reject_table(rejects: list[Reject]) -> pa.Table:
    return pa.Table.from_pylist([r.row() for r in rejects], schema=REJECT_SCHEMA)
