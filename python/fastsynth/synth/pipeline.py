"""The synthesis pipeline: corpus -> Level-1/2/3 questions -> answers -> QA -> Parquet parts.

Work is split into resumable parts (see :mod:`fastsynth.synth.rundir`): one part per
``batch_docs`` documents (concept extraction, Level-1 and Level-2 questions), one
``graph`` part (the Level-3 concept graph and its walks, once all concepts exist), one
part per ``batch_docs`` walks (Level-3 questions). Each part's questions go through online
near-duplicate removal, optional evolution, answering and QA before the part is written.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Iterable
from typing import Any

from fastsynth.quality.decontam import Decontaminator
from fastsynth.quality.judge import Judge
from fastsynth.synth import answers, evolve, level1, level2, level3, prompts, qa
from fastsynth.synth.calls import CallStats, Driver, derive_seed
from fastsynth.synth.config import SynthConfig
from fastsynth.synth.documents import Doc, fit_documents
from fastsynth.synth.level2 import DocConcepts
from fastsynth.synth.neardup import question_filter
from fastsynth.synth.provenance import QA_SCHEMA, REJECT_SCHEMA, QARecord, Reject, qa_table, reject_table
from fastsynth.synth.rundir import RunDir
from fastsynth.synth.summary import CONCEPT_SCHEMA, concepts_table, read_concepts, summarize

PROMPTS = ("level1", "concepts", "level2", "level3", "answer", "evolve_constraints", "evolve_deepen",
           "evolve_concretize", "evolve_reasoning", "evolve_breadth")
# Settings that do not change what a run produces, so a resumed run may change them.
_NOT_IDENTITY = ("diversity_embeddings", "retries", "gen_batch_size")
# Stages whose rejects had passed the near-duplicate filter (to rebuild it on resume).
_PASSED_DEDUP = ("answer", "qa", "decontam", "judge")


def spread(total: int, ids: list[str]) -> dict[str, int]:
    """``total`` items over ``ids`` as evenly as possible (counts differ by at most one)."""
    n = len(ids)
    return {d: (i + 1) * total // n - i * total // n for i, d in enumerate(ids)} if n else {}


def _load_records(source: Any) -> Iterable[dict]:
    if isinstance(source, (str, os.PathLike)):
        from fastsynth.corpus import read
        return read(source)
    return source


def _eval_texts(eval_set: Any) -> list[str]:
    if eval_set is None:
        return []
    if isinstance(eval_set, (str, os.PathLike)):
        from fastsynth.corpus import read
        return [r["text"] for r in read(eval_set)]
    return [str(t) for t in eval_set]


class _Run:
    def __init__(self, docs: list[Doc], cfg: SynthConfig, rd: RunDir, gen: Any, ans_gen: Any,
                 judge_gen: Any, eval_texts: list[str]):
        self.cfg, self.rd = cfg, rd
        self.docs = {d.id: d for d in docs}
        self.q_driver = Driver(gen, batch_size=cfg.gen_batch_size, retries=cfg.retries)
        self.a_driver = (self.q_driver if ans_gen is gen else
                         Driver(ans_gen, batch_size=cfg.gen_batch_size, retries=cfg.retries))
        self.judge = (Judge(judge_gen, threshold=cfg.judge_threshold, seed=cfg.seed)
                      if cfg.judge_threshold is not None else None)
        self.decontam = Decontaminator(eval_texts, n=cfg.decontam_ngram) if eval_texts else None
        self.filter = question_filter(cfg.near_dup_threshold, prefer=cfg.dedup)
        self._rebuild_filter()

    def _rebuild_filter(self) -> None:
        for r in self.rd.read("qa", QA_SCHEMA).select(["id", "question"]).to_pylist():
            self.filter.add(r["id"], r["question"])
        rej = self.rd.read("rejects", REJECT_SCHEMA).to_pylist()
        for i, r in enumerate(rej):
            if r["stage"] in _PASSED_DEDUP:
                self.filter.add(f"rejected-{i}", r["text"])

    def context(self, rec: QARecord) -> str:
        ids = rec.source_ids
        cut = self.cfg.max_doc_chars // max(1, len(ids))
        return "\n\n".join(self.docs[i].text[:cut] for i in ids if i in self.docs)

    def _stats_delta(self, before: list[CallStats]) -> dict[str, float]:
        drivers = [self.q_driver] if self.a_driver is self.q_driver else [self.q_driver, self.a_driver]
        out: dict[str, float] = {}
        for d, b in zip(drivers, before):
            for k, v in d.stats.__dict__.items():
                out[k] = out.get(k, 0) + v - getattr(b, k)
        return out

    def _snapshot(self) -> list[CallStats]:
        drivers = [self.q_driver] if self.a_driver is self.q_driver else [self.q_driver, self.a_driver]
        return [CallStats(**d.stats.__dict__) for d in drivers]

    def finish_questions(self, cands: list[QARecord], rejects: list[Reject]) -> list[QARecord]:
        """Near-dup filter, evolution, answers and QA for one part's candidate questions."""
        cfg = self.cfg
        fresh = self._dedup(cands, rejects)
        if cfg.evolve_fraction > 0 and fresh:
            pick = [r for r in fresh if derive_seed(cfg.seed, "evolve-pick", r.id) / 0x7FFFFFFF < cfg.evolve_fraction]
            res = self.q_driver.run(evolve.calls(pick, cfg.seed, cfg.evolve_max_tokens, cfg.temperature))
            evolved, rj = evolve.collect(res)
            rejects.extend(rj)
            fresh += self._dedup(evolved, rejects)
        res = self.a_driver.run(answers.calls(fresh, self.context, cfg.answer_samples, cfg.seed,
                                              cfg.answer_max_tokens, cfg.answer_temperature))
        answered, rj = answers.collect(res, cfg.answer_samples, cfg.min_agreement)
        rejects.extend(rj)
        kept, rj = qa.check(answered, decontam=self.decontam, judge=self.judge)
        rejects.extend(rj)
        return kept

    def _dedup(self, recs: list[QARecord], rejects: list[Reject]) -> list[QARecord]:
        out = []
        for r in recs:
            hit = self.filter.add(r.id, r.question)
            if hit is None:
                out.append(r)
            else:
                rejects.append(Reject(r.level, "dedup", "near_duplicate", r.source_ids, r.question, r.seed,
                                      r.prompt_version))
        return out

    def doc_part(self, part: str, batch: list[Doc], q1: dict[str, int], q2: dict[str, int],
                 pregenerated: Any = None) -> None:
        """One document batch: its candidates (generated here, or read from
        ``pregenerated`` when an executor made them; :func:`generate_candidates`), then the
        order-dependent rest (:meth:`finish_questions`)."""
        before, t0 = self._snapshot(), time.perf_counter()
        ahead = load_candidates(pregenerated, part, candidates_key(batch, q1, q2, self.cfg, self.q_driver.generator)) \
            if pregenerated is not None else None
        if ahead is None:
            cands, rejects, concepts = generate_candidates(batch, q1, q2, self.cfg, self.q_driver)
            extra: dict[str, float] = {}
        else:
            cands, rejects, concepts, extra = ahead
        kept = self.finish_questions(cands, rejects)
        calls = self._stats_delta(before)
        for k, v in extra.items():
            if k != "part_seconds":  # the generating part's wall time, added to this part's below
                calls[k] = calls.get(k, 0) + v
        self.rd.finish(part, {"qa": qa_table(kept), "rejects": reject_table(rejects),
                              "concepts": concepts_table(concepts)},
                       {"calls": calls, "seconds": time.perf_counter() - t0 + extra.get("part_seconds", 0.0)})

    def walk_part(self, part: str, walks: list, graph: Any, display: dict[str, str]) -> None:
        cfg = self.cfg
        before, t0 = self._snapshot(), time.perf_counter()
        rejects: list[Reject] = []
        res = self.q_driver.run(level3.calls(walks, graph, display, self.docs, cfg.question_max_tokens,
                                             cfg.temperature, cfg.max_doc_chars))
        cands, rj = level3.collect(res, graph)
        rejects.extend(rj)
        kept = self.finish_questions(cands, rejects)
        self.rd.finish(part, {"qa": qa_table(kept), "rejects": reject_table(rejects)},
                       {"calls": self._stats_delta(before), "seconds": time.perf_counter() - t0})


def synthesize(source: Any, out: str | os.PathLike, *, generator: Any = None, answer_generator: Any = None,
               judge_generator: Any = None, config: SynthConfig | None = None, eval_set: Any = None,
               overwrite: bool = False, show_progress: bool | None = None,
               redo_damaged: bool = False, pregenerated: str | os.PathLike | None = None) -> dict[str, Any]:
    """Generate question-answer records from ``source`` into the run directory ``out``.

    Args:
        source: a corpus path or ``"builtin:python-docs"`` (read with
            :func:`fastsynth.corpus.read`), or an iterable of ``{"id", "text"}`` dicts.
        out: the run directory; if it holds an unfinished run with the same settings, the
            run continues after its last finished part.
        generator: writes questions (and extracts concepts); default: the local backend.
        answer_generator: writes answers (default: ``generator``).
        judge_generator: the LLM judge (default: ``answer_generator``); used when
            ``config.judge_threshold`` is set.
        eval_set: texts (or a corpus path) to decontaminate against.
        redo_damaged: forget finished parts whose files are damaged, so they are
            generated again (otherwise such a part stops the run, named).
        pregenerated: a folder where an executor saved document batches' candidates
            (:func:`save_candidates`); a batch found there with a matching key is not
            generated again (the output is the same either way).
    Returns:
        The summary (also written to ``out/summary.json``); records are in ``out/qa/``.
    """
    cfg = config or SynthConfig()
    t_start = time.perf_counter()
    if generator is None:
        from fastsynth.llm import generator as make_generator
        generator = make_generator("local")
    ans_gen = answer_generator or generator
    judge_gen = judge_generator or ans_gen
    docs, skipped = fit_documents(_load_records(source), cfg.max_doc_chars, cfg.on_long, cfg.max_chunks)
    ev = _eval_texts(eval_set)
    corpus_sha = hashlib.sha1("\x1e".join(f"{d.id}\x1f{d.text}" for d in docs).encode()).hexdigest()
    ident = {k: v for k, v in cfg.as_dict().items() if k not in _NOT_IDENTITY}
    ident.update(corpus_sha1=corpus_sha, eval_sha1=hashlib.sha1("\x1e".join(ev).encode()).hexdigest(),
                 prompts={p: prompts.load(p).id for p in PROMPTS},
                 models=[_name(generator), _name(ans_gen), _name(judge_gen) if cfg.judge_threshold else None])
    rd = RunDir(out, ident, overwrite=overwrite, redo_damaged=redo_damaged)
    run = _Run(docs, cfg, rd, generator, ans_gen, judge_gen, ev)
    if not rd.done("input"):
        rd.finish("input", {"rejects": reject_table([Reject(0, "input", r, [d]) for d, r in skipped])}, {})

    ids = [d.id for d in docs]
    total = round(cfg.questions_per_doc * len(ids))
    quota = {lv: round(total * cfg.level_share(lv)) for lv in (1, 2, 3)}
    n_batches = math.ceil(len(docs) / cfg.batch_docs)
    n_walks = math.ceil(quota[3] / 2) if 3 in cfg.levels else 0  # a walk asks for 1-3 questions, 2 on average
    from fastsynth.progress import progress
    with progress(total=n_batches + math.ceil(n_walks / cfg.batch_docs), desc="synth", unit="part",
                  enabled=show_progress) as bar:
        for part, batch, bq1, bq2 in doc_batches(docs, cfg):
            if not rd.done(part):
                run.doc_part(part, batch, bq1, bq2, pregenerated)
            bar.update(1)
        if n_walks:
            concepts = read_concepts(rd.read("concepts", CONCEPT_SCHEMA))
            graph, display = level3.build_graph(concepts)
            walks, n_bad = level3.sample_walks(graph, n_walks, cfg.seed, cfg.walk_temperature)
            if not rd.done("graph"):
                rd.finish("graph", {"rejects": reject_table([Reject(3, "walk", "single_document_walk", [])] * n_bad)},
                          {"topics": len(graph.topics), "concepts": len(graph.concepts), "walks": len(walks)})
            for k in range(math.ceil(len(walks) / cfg.batch_docs)):
                part = f"walks-{k:05d}"
                if not rd.done(part):
                    run.walk_part(part, walks[k * cfg.batch_docs:(k + 1) * cfg.batch_docs], graph, display)
                bar.update(1)
    return summarize(rd, docs, skipped, quota, cfg, time.perf_counter() - t_start, filter_kind=run.filter.kind)


# -- candidates of a document batch, made ahead by an executor (docs/scale.md) -----------------
# A batch's candidates (concepts, Level-1 and Level-2 questions) depend on the batch, its
# quotas, the settings and the model only, never on what the near-duplicate filter kept
# from earlier batches; everything after them (the filter, evolution, answers, QA) does.
# So an executor may generate the candidates of every batch at once, anywhere
# (``generate_candidates`` with the same calls in the same batches), and
# :func:`synthesize` runs the order-dependent rest over them in part order.

def generate_candidates(batch: list[Doc], q1: dict[str, int], q2: dict[str, int], cfg: SynthConfig,
                        driver: Driver) -> tuple[list[QARecord], list[Reject], list[DocConcepts]]:
    """Concept extraction and Level-1/2 questions of one document batch (``q1``/``q2``:
    question quotas by document id) through ``driver``."""
    rejects: list[Reject] = []
    cands: list[QARecord] = []
    concepts: list[DocConcepts] = []
    if 2 in cfg.levels or 3 in cfg.levels:
        res = driver.run(level2.concept_calls(batch, cfg.seed, cfg.concept_max_tokens))
        concepts, rj = level2.collect_concepts(res, grounded=cfg.grounded_concepts,
                                               min_concepts=cfg.min_concepts)
        rejects.extend(rj)
    if 1 in cfg.levels:
        res = driver.run(level1.calls(batch, q1, cfg.seed, cfg.question_max_tokens, cfg.temperature))
        recs, rj = level1.collect(res)
        cands += recs
        rejects.extend(rj)
    if 2 in cfg.levels:
        res = driver.run(level2.question_calls({d.id: d for d in batch}, concepts, q2, cfg.seed,
                                               cfg.question_max_tokens, cfg.temperature))
        recs, rj = level2.collect_questions(res)
        cands += recs
        rejects.extend(rj)
    return cands, rejects, concepts


def doc_batches(docs: list[Doc], cfg: SynthConfig) -> list[tuple[str, list[Doc], dict[str, int], dict[str, int]]]:
    """The document parts of a run: ``(part, batch, q1, q2)`` with the batch's Level-1/2
    quotas, as :func:`synthesize` splits them."""
    ids = [d.id for d in docs]
    total = round(cfg.questions_per_doc * len(ids))
    q1 = spread(round(total * cfg.level_share(1)), ids)
    q2 = spread(round(total * cfg.level_share(2)), ids)
    out = []
    for b in range(math.ceil(len(docs) / cfg.batch_docs)):
        batch = docs[b * cfg.batch_docs:(b + 1) * cfg.batch_docs]
        out.append((f"docs-{b:05d}", batch, {d.id: q1[d.id] for d in batch}, {d.id: q2[d.id] for d in batch}))
    return out


def candidates_key(batch: list[Doc], q1: dict[str, int], q2: dict[str, int], cfg: SynthConfig,
                   generator: Any) -> str:
    """What a batch's candidates depend on (documents, quotas, settings, prompts, model), hashed."""
    ident = {k: v for k, v in cfg.as_dict().items() if k not in _NOT_IDENTITY}
    blob = repr((ident, [(d.id, d.text, q1.get(d.id, 0), q2.get(d.id, 0)) for d in batch],
                 {p: prompts.load(p).id for p in ("concepts", "level1", "level2")}, _name(generator)))
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()


def save_candidates(folder: str | os.PathLike, part: str, key: str, cands: list[QARecord],
                    rejects: list[Reject], concepts: list[DocConcepts], calls: dict[str, float]) -> None:
    """Write a batch's candidates as ``<part>.{candidates,rejects,concepts}.parquet`` and,
    last (its commit record), ``<part>.json`` with ``key`` and the call counts."""
    import json
    from pathlib import Path

    from fastsynth.atomic import atomic_write_text, write_parquet

    folder = Path(folder)
    write_parquet(folder / f"{part}.candidates.parquet", qa_table(cands))
    write_parquet(folder / f"{part}.rejects.parquet", reject_table(rejects))
    write_parquet(folder / f"{part}.concepts.parquet", concepts_table(concepts))
    atomic_write_text(folder / f"{part}.json", json.dumps({"key": key, "calls": calls}, sort_keys=True))


def load_candidates(folder: str | os.PathLike, part: str, key: str) -> \
        tuple[list[QARecord], list[Reject], list[DocConcepts], dict[str, float]] | None:
    """A batch's saved candidates, or None when absent or made for another key (other
    documents, settings or model: then the batch is generated again, here)."""
    import json
    from pathlib import Path

    import pyarrow.parquet as pq

    folder = Path(folder)
    try:
        meta = json.loads((folder / f"{part}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("key") != key:
        return None
    cands = [QARecord(**{**r, "metrics": dict(r["metrics"] or [])})
             for r in pq.read_table(folder / f"{part}.candidates.parquet", schema=QA_SCHEMA).to_pylist()]
    rejects = [Reject(**r) for r in pq.read_table(folder / f"{part}.rejects.parquet", schema=REJECT_SCHEMA).to_pylist()]
    concepts = read_concepts(pq.read_table(folder / f"{part}.concepts.parquet", schema=CONCEPT_SCHEMA))
    return cands, rejects, concepts, dict(meta.get("calls", {}))


def _name(gen: Any) -> str:
    return str(getattr(gen, "model_name", "") or type(gen).__name__)


__all__ = ["SynthConfig", "synthesize", "spread", "generate_candidates", "doc_batches", "candidates_key",
           "save_candidates", "load_candidates"]
