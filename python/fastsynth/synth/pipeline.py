"""The synthesis pipeline: corpus -> Level-1/2/3 questions -> answers -> QA -> Parquet parts.

Work is split into resumable parts (see :mod:`fastsynth.synth.rundir`): one part per
``batch_docs`` documents (concept extraction, Level-1 and Level-2 questions), one
``graph`` part (the Level-3 concept graph and its walks, once all concepts exist), one
part per ``batch_docs`` walks (Level-3 questions). Each part's questions go through online
near-duplicate removal, optional evolution, answering and QA before the part is written.

Each of a part's LLM call groups (candidates, evolution, answers + QA) may have been made
ahead by an executor and saved (``pregenerated``); :func:`select_questions` and
:func:`answer_selection` are the two halves of that split (docs/scale.md).
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
    """The order-dependent loop of one synthesis. ``memo``: folders of call groups an
    executor made ahead (:func:`save_group`; looked up by key, else computed here);
    ``save_to``: a folder where the groups computed here are saved (by
    :func:`select_questions`); ``rd`` None: no run directory (nothing to resume from)."""

    def __init__(self, docs: list[Doc], cfg: SynthConfig, rd: RunDir | None, gen: Any, ans_gen: Any,
                 judge_gen: Any, eval_texts: list[str], ident_sha: str = "", memo: tuple = (),
                 save_to: str | os.PathLike | None = None):
        self.cfg, self.rd = cfg, rd
        self.docs = {d.id: d for d in docs}
        self.q_driver = Driver(gen, batch_size=cfg.gen_batch_size, retries=cfg.retries)
        self.a_driver = (self.q_driver if ans_gen is gen else
                         Driver(ans_gen, batch_size=cfg.gen_batch_size, retries=cfg.retries))
        self.judge = (Judge(judge_gen, threshold=cfg.judge_threshold, seed=cfg.seed)
                      if cfg.judge_threshold is not None else None)
        self.decontam = Decontaminator(eval_texts, n=cfg.decontam_ngram) if eval_texts else None
        self.filter = question_filter(cfg.near_dup_threshold, prefer=cfg.dedup)
        self.ident_sha, self.memo, self.save_to = ident_sha, tuple(memo), save_to
        self.extra: dict[str, float] = {}  # call counts of groups taken from ``memo`` for this part
        if rd is not None:
            self._rebuild_filter()

    def _rebuild_filter(self) -> None:
        for r in self.rd.read("qa", QA_SCHEMA).select(["id", "question"]).to_pylist():
            self.filter.add(r["id"], r["question"])
        rej = self.rd.read("rejects", REJECT_SCHEMA).to_pylist()
        for i, r in enumerate(rej):
            if r["stage"] in _PASSED_DEDUP:
                self.filter.add(f"rejected-{i}", r["text"])

    def _group(self, name: str, key: str, compute: Any) -> tuple[list[QARecord], list[Reject]]:
        """``compute()``'s records and rejects, or the ones saved under ``name`` with ``key``
        (their call counts then go to :attr:`extra`, as if made here)."""
        got = load_group(self.memo, name, key)
        if got is not None:
            recs, rejects, calls = got
            for k, v in calls.items():
                self.extra[k] = self.extra.get(k, 0) + v
            return recs, rejects
        before = self._snapshot()
        recs, rejects = compute()
        if self.save_to is not None:
            save_group(self.save_to, name, key, recs, rejects, self._stats_delta(before))
        return recs, rejects

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

    def select(self, part: str, cands: list[QARecord], rejects: list[Reject]) -> list[QARecord]:
        """Near-dup filter and evolution of one part's candidates: the order-dependent step
        (the filter holds every earlier part's questions). Depends on question texts only."""
        cfg = self.cfg
        fresh = self._dedup(cands, rejects)
        if cfg.evolve_fraction > 0 and fresh:
            pick = [r for r in fresh if derive_seed(cfg.seed, "evolve-pick", r.id) / 0x7FFFFFFF < cfg.evolve_fraction]
            evolved, rj = self._group(f"{part}.evolve", records_key(self.ident_sha, "evolve", pick),
                                      lambda: evolve.collect(self.q_driver.run(
                                          evolve.calls(pick, cfg.seed, cfg.evolve_max_tokens, cfg.temperature))))
            rejects.extend(rj)
            fresh += self._dedup(evolved, rejects)
        return fresh

    def answer(self, part: str, fresh: list[QARecord], rejects: list[Reject]) -> list[QARecord]:
        """Answers and QA of one part's selected questions (:func:`answer_records`): they
        depend on those questions only, so an executor may make them ahead."""
        if not fresh:
            return []
        key = records_key(self.ident_sha, "answer", fresh)  # before answer_records fills them in
        kept, rj = self._group(f"{part}.answer", key, lambda: answer_records(
            fresh, self.context, self.cfg, self.a_driver, self.decontam, self.judge))
        rejects.extend(rj)
        return kept

    def doc_candidates(self, part: str, batch: list[Doc], q1: dict[str, int],
                       q2: dict[str, int]) -> tuple[list[QARecord], list[Reject], list[DocConcepts]]:
        """A document batch's candidates: made ahead (``memo``) or generated here."""
        key = candidates_key(batch, q1, q2, self.cfg, self.q_driver.generator)
        for folder in self.memo:
            ahead = load_candidates(folder, part, key)
            if ahead is not None:
                cands, rejects, concepts, extra = ahead
                for k, v in extra.items():
                    if k != "part_seconds":  # the generating part's wall time
                        self.extra[k] = self.extra.get(k, 0) + v
                return cands, rejects, concepts
        before = self._snapshot()
        cands, rejects, concepts = generate_candidates(batch, q1, q2, self.cfg, self.q_driver)
        if self.save_to is not None:
            save_candidates(self.save_to, part, key, cands, rejects, concepts, self._stats_delta(before))
        return cands, rejects, concepts

    def walk_candidates(self, part: str, walks: list, graph: Any,
                        display: dict[str, str]) -> tuple[list[QARecord], list[Reject]]:
        """A walk batch's Level-3 questions: made ahead (``memo``) or generated here."""
        cfg = self.cfg
        cl = level3.calls(walks, graph, display, self.docs, cfg.question_max_tokens, cfg.temperature,
                          cfg.max_doc_chars)
        recs, rejects = self._group(f"{part}.cands", walk_calls_key(cl, graph, self.q_driver),
                                    lambda: level3.collect(self.q_driver.run(cl), graph))
        return recs, list(rejects)

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

    def doc_part(self, part: str, batch: list[Doc], q1: dict[str, int], q2: dict[str, int]) -> None:
        """One document batch: its candidates, the filter and evolution (:meth:`select`),
        answers and QA (:meth:`answer`); each step's calls taken from ``memo`` when an
        executor made them ahead."""
        before, t0 = self._snapshot(), time.perf_counter()
        self.extra = {}
        cands, rejects, concepts = self.doc_candidates(part, batch, q1, q2)
        kept = self.answer(part, self.select(part, cands, rejects), rejects)
        self._finish(part, before, t0, {"qa": qa_table(kept), "rejects": reject_table(rejects),
                                        "concepts": concepts_table(concepts)})

    def walk_part(self, part: str, walks: list, graph: Any, display: dict[str, str]) -> None:
        before, t0 = self._snapshot(), time.perf_counter()
        self.extra = {}
        cands, rejects = self.walk_candidates(part, walks, graph, display)
        kept = self.answer(part, self.select(part, cands, rejects), rejects)
        self._finish(part, before, t0, {"qa": qa_table(kept), "rejects": reject_table(rejects)})

    def _finish(self, part: str, before: list[CallStats], t0: float, tables: dict) -> None:
        calls = self._stats_delta(before)
        for k, v in self.extra.items():
            calls[k] = calls.get(k, 0) + v
        # the generation seconds of groups made elsewhere count in this part's wall time
        self.rd.finish(part, tables, {"calls": calls,
                                      "seconds": time.perf_counter() - t0 + self.extra.get("seconds", 0.0)})


def walk_questions(part: str, walks: list, graph: Any, display: dict[str, str], docs: list[Doc],
                   cfg: SynthConfig, generator: Any, out: str | os.PathLike) -> tuple[int, int]:
    """A walk batch's Level-3 questions (``walks`` of :func:`walk_batches`) generated and
    saved in ``out`` as the group :func:`synthesize` looks up (``<part>.cands.*``).
    Returns the counts of questions and rejects."""
    run = _Run(docs, cfg, None, generator, generator, generator, [], save_to=out)
    recs, rejects = run.walk_candidates(part, walks, graph, display)
    return len(recs), len(rejects)


def answer_records(fresh: list[QARecord], context: Any, cfg: SynthConfig, driver: Driver,
                   decontam: Decontaminator | None, judge: Judge | None) -> tuple[list[QARecord], list[Reject]]:
    """Answers (``cfg.answer_samples`` per question through ``driver``) and QA checks
    (decontamination, the judge) of selected questions; ``context(record)`` gives the
    document text a record's answer prompt holds. Fills the kept records' answer fields
    (the input records are changed in place)."""
    rejects: list[Reject] = []
    res = driver.run(answers.calls(fresh, context, cfg.answer_samples, cfg.seed,
                                   cfg.answer_max_tokens, cfg.answer_temperature))
    answered, rj = answers.collect(res, cfg.answer_samples, cfg.min_agreement)
    rejects.extend(rj)
    kept, rj = qa.check(answered, decontam=decontam, judge=judge)
    rejects.extend(rj)
    return kept, rejects


def walk_batches(concepts: list[DocConcepts], n_walks: int, cfg: SynthConfig) -> tuple[Any, dict[str, str], list[tuple[str, list]], int]:
    """The Level-3 concept graph over ``concepts`` (every document's, in part order), its
    display names, the walk parts ``[(part, walks)]`` (``cfg.batch_docs`` walks each) and
    the number of walks rejected as ungrounded."""
    graph, display = level3.build_graph(concepts)
    walks, n_bad = level3.sample_walks(graph, n_walks, cfg.seed, cfg.walk_temperature)
    parts = [(f"walks-{k:05d}", walks[k * cfg.batch_docs:(k + 1) * cfg.batch_docs])
             for k in range(math.ceil(len(walks) / cfg.batch_docs))]
    return graph, display, parts, n_bad


def level_quotas(n_docs: int, cfg: SynthConfig) -> tuple[dict[int, int], int]:
    """Questions asked per level, and the number of Level-3 walks."""
    total = round(cfg.questions_per_doc * n_docs)
    quota = {lv: round(total * cfg.level_share(lv)) for lv in (1, 2, 3)}
    return quota, (math.ceil(quota[3] / 2) if 3 in cfg.levels else 0)  # a walk asks for 1-3 questions, 2 on average


def run_ident(cfg: SynthConfig, docs: list[Doc], eval_texts: list[str], generator: Any, ans_gen: Any,
              judge_gen: Any) -> dict[str, Any]:
    """What a synthesis's output depends on (its run directory's identity)."""
    corpus_sha = hashlib.sha1("\x1e".join(f"{d.id}\x1f{d.text}" for d in docs).encode()).hexdigest()
    ident = {k: v for k, v in cfg.as_dict().items() if k not in _NOT_IDENTITY}
    ident.update(corpus_sha1=corpus_sha, eval_sha1=hashlib.sha1("\x1e".join(eval_texts).encode()).hexdigest(),
                 prompts={p: prompts.load(p).id for p in PROMPTS},
                 models=[_name(generator), _name(ans_gen), _name(judge_gen) if cfg.judge_threshold else None])
    return ident


def _ident_sha(ident: dict, cfg: SynthConfig) -> str:
    # the request batches too: a batched backend's output may depend on the batch
    return hashlib.sha1(repr((sorted(ident.items()), cfg.gen_batch_size, cfg.retries)).encode()).hexdigest()


def _memo_folders(pregenerated: Any) -> tuple:
    if pregenerated is None:
        return ()
    if isinstance(pregenerated, (str, os.PathLike)):
        return (pregenerated,)
    return tuple(pregenerated)


def synthesize(source: Any, out: str | os.PathLike, *, generator: Any = None, answer_generator: Any = None,
               judge_generator: Any = None, config: SynthConfig | None = None, eval_set: Any = None,
               overwrite: bool = False, show_progress: bool | None = None,
               redo_damaged: bool = False, pregenerated: Any = None) -> dict[str, Any]:
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
        pregenerated: a folder (or several) where an executor saved call groups made
            ahead: document batches' candidates (:func:`save_candidates`), Level-3
            questions, evolutions (:func:`select_questions`) and answers
            (:func:`answer_selection`); a group found there with a matching key is not
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
    ident = run_ident(cfg, docs, ev, generator, ans_gen, judge_gen)
    rd = RunDir(out, ident, overwrite=overwrite, redo_damaged=redo_damaged)
    run = _Run(docs, cfg, rd, generator, ans_gen, judge_gen, ev, ident_sha=_ident_sha(ident, cfg),
               memo=_memo_folders(pregenerated))
    if not rd.done("input"):
        rd.finish("input", {"rejects": reject_table([Reject(0, "input", r, [d]) for d, r in skipped])}, {})

    quota, n_walks = level_quotas(len(docs), cfg)
    n_batches = math.ceil(len(docs) / cfg.batch_docs)
    from fastsynth.progress import progress
    with progress(total=n_batches + math.ceil(n_walks / cfg.batch_docs), desc="synth", unit="part",
                  enabled=show_progress) as bar:
        for part, batch, bq1, bq2 in doc_batches(docs, cfg):
            if not rd.done(part):
                run.doc_part(part, batch, bq1, bq2)
            bar.update(1)
        if n_walks:
            concepts = read_concepts(rd.read("concepts", CONCEPT_SCHEMA))
            graph, display, wparts, n_bad = walk_batches(concepts, n_walks, cfg)
            if not rd.done("graph"):
                rd.finish("graph", {"rejects": reject_table([Reject(3, "walk", "single_document_walk", [])] * n_bad)},
                          {"topics": len(graph.topics), "concepts": len(graph.concepts),
                           "walks": sum(len(w) for _, w in wparts)})
            for part, walks in wparts:
                if not rd.done(part):
                    run.walk_part(part, walks, graph, display)
                bar.update(1)
    return summarize(rd, docs, skipped, quota, cfg, time.perf_counter() - t_start, filter_kind=run.filter.kind)


# -- the order-dependent middle, ahead of the answers (docs/scale.md) ---------------------------
# What follows a part's candidates splits in two: the near-duplicate filter and evolution
# need every earlier part's questions (their texts only, never an answer), and answers and
# QA need only the part's own selected questions. So an executor runs
# :func:`select_questions` once, in part order, and then every part's answers anywhere
# (:func:`answer_selection`); :func:`synthesize` then finds every call group made and
# replays the (cheap) filter to write the same parts as an unsplit run.

def select_questions(source: Any, folder: str | os.PathLike, *, generator: Any, answer_generator: Any = None,
                     judge_generator: Any = None, config: SynthConfig | None = None, eval_set: Any = None,
                     pregenerated: Any = None) -> list[str]:
    """The filter and evolution over every part (document batches, then walk batches) in
    the order :func:`synthesize` takes them, saving in ``folder`` each part's selected
    questions (``<part>.selected.parquet``), their answer prompts' document text
    (``<part>.context.parquet``: ``id``, ``context``) and, last, ``<part>.selected.json``
    (``key``: what the part's answers are saved under). Candidates and Level-3 questions
    come from ``pregenerated`` when made there (else they are generated here and saved in
    ``folder``, like the evolutions). Returns the parts with at least one selected question.
    Same arguments as :func:`synthesize`, which must then be given ``folder`` too."""
    import json
    from pathlib import Path

    import pyarrow as pa

    from fastsynth.atomic import atomic_write_text, write_parquet

    cfg = config or SynthConfig()
    ans_gen = answer_generator or generator
    judge_gen = judge_generator or ans_gen
    docs, _ = fit_documents(_load_records(source), cfg.max_doc_chars, cfg.on_long, cfg.max_chunks)
    ident_sha = _ident_sha(run_ident(cfg, docs, _eval_texts(eval_set), generator, ans_gen, judge_gen), cfg)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    run = _Run(docs, cfg, None, generator, ans_gen, judge_gen, [], ident_sha=ident_sha,
               memo=_memo_folders(pregenerated) + (folder,), save_to=folder)
    names: list[str] = []

    def keep(part: str, fresh: list[QARecord]) -> None:
        if not fresh:
            return
        write_parquet(folder / f"{part}.selected.parquet", qa_table(fresh))
        write_parquet(folder / f"{part}.context.parquet", pa.table(
            {"id": [r.id for r in fresh], "context": [run.context(r) for r in fresh]}))
        atomic_write_text(folder / f"{part}.selected.json",
                          json.dumps({"key": records_key(ident_sha, "answer", fresh)}))
        names.append(part)

    concepts: list[pa.Table] = []
    for part, batch, q1, q2 in doc_batches(docs, cfg):
        cands, rejects, cs = run.doc_candidates(part, batch, q1, q2)
        concepts.append(concepts_table(cs))
        keep(part, run.select(part, cands, rejects))
    _, n_walks = level_quotas(len(docs), cfg)
    if n_walks:
        graph, display, wparts, _ = walk_batches(read_concepts(pa.concat_tables(concepts)), n_walks, cfg)
        for part, walks in wparts:
            cands, rejects = run.walk_candidates(part, walks, graph, display)
            keep(part, run.select(part, cands, rejects))
    return names


def answer_selection(selection: str | os.PathLike, part: str, out: str | os.PathLike, cfg: SynthConfig,
                     answer_generator: Any, judge_generator: Any = None, eval_set: Any = None) -> int:
    """Answers and QA of a part :func:`select_questions` saved in ``selection``, saved in
    ``out`` as the group :func:`synthesize` looks up (``<part>.answer.*``). The same calls
    in the same request batches as in an unsplit synthesis. Returns the kept records' count."""
    import json
    from pathlib import Path

    import pyarrow.parquet as pq

    selection = Path(selection)
    key = json.loads((selection / f"{part}.selected.json").read_text(encoding="utf-8"))["key"]
    fresh = _records(pq.read_table(selection / f"{part}.selected.parquet", schema=QA_SCHEMA))
    ctx_t = pq.read_table(selection / f"{part}.context.parquet").to_pydict()
    ctx = dict(zip(ctx_t["id"], ctx_t["context"]))
    driver = Driver(answer_generator, batch_size=cfg.gen_batch_size, retries=cfg.retries)
    judge = (Judge(judge_generator or answer_generator, threshold=cfg.judge_threshold, seed=cfg.seed)
             if cfg.judge_threshold is not None else None)
    ev = _eval_texts(eval_set)
    decontam = Decontaminator(ev, n=cfg.decontam_ngram) if ev else None
    kept, rejects = answer_records(fresh, lambda r: ctx[r.id], cfg, driver, decontam, judge)
    save_group(out, f"{part}.answer", key, kept, rejects, dict(driver.stats.__dict__))
    return len(kept)


def records_key(ident_sha: str, kind: str, records: list[QARecord]) -> str:
    """What a call group over ``records`` depends on (the run's identity and the records), hashed."""
    rows = [r.row() for r in records]
    return hashlib.sha1(repr((ident_sha, kind, rows)).encode("utf-8")).hexdigest()


def walk_calls_key(calls: list, graph: Any, driver: Driver) -> str:
    """What a walk batch's Level-3 questions depend on: the requests (prompt, seed, limits),
    the grounding documents, picked concepts and their topics, the model and batching."""
    rows = [(c.request, c.seed, c.max_tokens, c.temperature, [d for d, _ in c.tag[1]], list(c.tag[2]),
             sorted({t for x in c.tag[2] for t in graph.concept_topics.get(x, ())})) for c in calls]
    return hashlib.sha1(repr((rows, _name(driver.generator), driver.batch_size, driver.retries,
                              prompts.load("concepts").id)).encode("utf-8")).hexdigest()


def save_group(folder: str | os.PathLike, name: str, key: str, records: list[QARecord], rejects: list[Reject],
               calls: dict[str, float]) -> None:
    """A call group's output as ``<name>.records.parquet``, ``<name>.rejects.parquet`` and,
    last (its commit record), ``<name>.json`` with ``key`` and the call counts."""
    import json
    from pathlib import Path

    from fastsynth.atomic import atomic_write_text, write_parquet

    folder = Path(folder)
    write_parquet(folder / f"{name}.records.parquet", qa_table(records))
    write_parquet(folder / f"{name}.rejects.parquet", reject_table(rejects))
    atomic_write_text(folder / f"{name}.json", json.dumps({"key": key, "calls": calls}, sort_keys=True))


def load_group(folders: Iterable, name: str, key: str) -> \
        tuple[list[QARecord], list[Reject], dict[str, float]] | None:
    """The group saved as ``name`` with ``key`` in the first of ``folders`` holding it, or None."""
    import json
    from pathlib import Path

    import pyarrow.parquet as pq

    for folder in folders:
        folder = Path(folder)
        try:
            meta = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if meta.get("key") != key:
            continue
        recs = _records(pq.read_table(folder / f"{name}.records.parquet", schema=QA_SCHEMA))
        rejects = [Reject(**r) for r in pq.read_table(folder / f"{name}.rejects.parquet",
                                                      schema=REJECT_SCHEMA).to_pylist()]
        return recs, rejects, dict(meta.get("calls", {}))
    return None


def _records(table: Any) -> list[QARecord]:
    return [QARecord(**{**r, "metrics": dict(r["metrics"] or [])}) for r in table.to_pylist()]


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
    cands = _records(pq.read_table(folder / f"{part}.candidates.parquet", schema=QA_SCHEMA))
    rejects = [Reject(**r) for r in pq.read_table(folder / f"{part}.rejects.parquet", schema=REJECT_SCHEMA).to_pylist()]
    concepts = read_concepts(pq.read_table(folder / f"{part}.concepts.parquet", schema=CONCEPT_SCHEMA))
    return cands, rejects, concepts, dict(meta.get("calls", {}))


def _name(gen: Any) -> str:
    return str(getattr(gen, "model_name", "") or type(gen).__name__)


__all__ = ["SynthConfig", "synthesize", "spread", "generate_candidates", "doc_batches", "candidates_key",
           "save_candidates", "load_candidates", "select_questions", "answer_selection", "answer_records",
           "walk_batches", "walk_questions", "level_quotas", "save_group", "load_group"]
