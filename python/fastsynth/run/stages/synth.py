"""Stage ``synth``: SynthLLM question-answer pairs (Levels 1-3, answers, QA checks).

One Global step runs :func:`fastsynth.synth.synthesize` over the first ``max_docs``
deduplicated documents into ``synth/work/`` — a synthesis run directory with its own
parts (document batches -> the Level-3 concept graph -> walk batches) and its own resume,
so a killed run continues after the last finished synthesis part. Its parts are ordered,
not independent: the online near-duplicate filter sees every earlier question
(docs/architecture.md, "Synthesis inside a run"). The step then writes the accepted
pairs as ``synth/out/00000.parquet`` (the QA schema plus ``text`` = "Question: ...
Answer: ...") and the rejected candidates to ``rejects/synth/`` with ``stage:reason``.

Counts are in question candidates: in = accepted + rejected (documents the synthesis
skipped at input count as rejected ``input:<reason>``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from fastsynth.atomic import write_parquet
from fastsynth.run.config import check, option
from fastsynth.run.records import read_parts, reject_table, write_rejects
from fastsynth.run.rundir import PartResult, part_path, rejects_path
from fastsynth.run.stage import Global, Stage, View


@dataclass(frozen=True)
class SynthStageConfig:
    backend: Literal["local", "openai", "vllm"] = option("local", "generator backend")
    model: str | None = option(None, "model path (local/vllm) or name (openai); none: the embedded "
                                     "SmolLM2-135M-Instruct")
    base_url: str | None = option(None, "server URL for the openai backend")
    max_docs: int = option(24, "synthesize from the first N deduplicated documents")
    questions_per_doc: float = option(2.0, "question budget per document")
    levels: tuple[int, ...] = option((1, 2, 3), "SynthLLM levels to run")
    shares: tuple[float, float, float] = option((0.3, 0.4, 0.3), "Level-1,2,3 shares of the budget")
    batch_docs: int = option(8, "documents (or walks) per synthesis part")
    max_doc_chars: int = option(1200, "document characters per prompt")
    max_chunks: int = option(4, "a longer document is cut into at most this many prompt-sized chunks "
                                "(the rest is a counted reject)")
    max_tokens: int = option(96, "new tokens per request (questions, concepts, answers)")
    seed: int = option(0, "sampling seed")
    gen_batch_size: int = option(8, "requests per generator call")

    def __post_init__(self) -> None:
        check(self.max_docs >= 1, "synth.max_docs", f"must be >= 1, got {self.max_docs}")
        check(self.max_tokens >= 1, "synth.max_tokens", f"must be >= 1, got {self.max_tokens}")
        check(self.base_url is None or self.backend == "openai", "synth.base_url",
              "is only for backend = openai")
        self.synth_config()  # the synthesis settings are checked once, here

    def synth_config(self):
        from fastsynth.synth.config import SynthConfig

        t = self.max_tokens
        return SynthConfig(levels=self.levels, shares=self.shares, questions_per_doc=self.questions_per_doc,
                           seed=self.seed, batch_docs=self.batch_docs, max_doc_chars=self.max_doc_chars,
                           max_chunks=self.max_chunks,
                           question_max_tokens=t, concept_max_tokens=t, answer_max_tokens=t,
                           evolve_max_tokens=t, gen_batch_size=self.gen_batch_size,
                           diversity_embeddings=False)


def qa_text(question: str, answer: str) -> str:
    """How a QA pair reads as training text."""
    return f"Question: {question}\nAnswer: {answer}"


def generate(config: SynthStageConfig, view: View) -> PartResult:
    from fastsynth.llm import generator
    from fastsynth.synth import synthesize
    from fastsynth.synth.provenance import QA_SCHEMA, REJECT_SCHEMA

    docs = read_parts(view.root, view.files("dedup", "out"), ["id", "text"]).slice(0, config.max_docs)
    opts = {k: v for k, v in (("model", config.model), ("base_url", config.base_url)) if v}
    work = view.global_dir("synth").parent / "work"
    summary = synthesize(docs.to_pylist(), work, generator=generator(config.backend, **opts),
                         config=config.synth_config(), show_progress=False, redo_damaged=True)
    manifest_parts = sorted(p for p in (work / "qa").glob("*.parquet"))
    import json
    listed = set(json.loads((work / "manifest.json").read_text())["parts"])
    qa = [pq.read_table(p, schema=QA_SCHEMA) for p in manifest_parts if p.stem in listed]
    qa_t = pa.concat_tables(qa) if qa else QA_SCHEMA.empty_table()
    qa_t = qa_t.append_column("text", pa.array([qa_text(q, a) for q, a in zip(
        qa_t.column("question").to_pylist(), qa_t.column("answer").to_pylist())], pa.large_string()))
    rej = [pq.read_table(p, schema=REJECT_SCHEMA) for p in sorted((work / "rejects").glob("*.parquet"))
           if p.stem in listed]
    rej_t = pa.concat_tables(rej) if rej else REJECT_SCHEMA.empty_table()
    rows = rej_t.to_pylist()
    by_reason = write_rejects(rejects_path(view.root, "synth", "generate"), reject_table(
        (",".join(r["source_ids"]) or f"level{r['level']}", f"{r['stage']}:{r['reason']}", r["text"] or "")
        for r in rows))
    write_parquet(part_path(view.root, "synth", "out", "00000"), qa_t)
    return PartResult(n_in=qa_t.num_rows + len(rows), n_out=qa_t.num_rows, n_rejected=len(rows),
                      rejected_by_reason=by_reason,
                      info={"parts": ["00000"], "documents": docs.num_rows,
                            "requested": summary["requested_questions"], "yield": summary["yield"],
                            "tokens": summary["tokens"], "diversity": summary["diversity"].get("all", {}),
                            "concept_source": summary["documents"]["concept_source"]})


STAGE = Stage("synth", SynthStageConfig, (Global("out", generate, counts=True),), needs=("dedup",),
              output="out", unit="questions",
              description="SynthLLM questions (levels 1-3), answers and QA checks")
