"""Stage ``synth``: SynthLLM question-answer pairs (Levels 1-3, answers, QA checks).

Five phases (docs/scale.md, "Generation on an actor pool"); the generation calls are in
the three Map phases, which a distributed executor runs on a pool of ``gen_actors``
actors (one model load per actor and phase):

1. ``Map("gen")``, one part per document batch of the synthesis: the batch's concepts and
   Level-1/2 question candidates (:func:`fastsynth.synth.pipeline.generate_candidates`)
   -> ``synth/gen/<batch>.*``;
2. ``Map("walks")``, one part per Level-3 walk batch: the concept graph over every
   batch's concepts (rebuilt in each process: cheap next to generation) and the batch's
   Level-3 questions -> ``synth/walks/<batch>.cands.*``;
3. ``Global("select")``: the online near-duplicate filter (it sees every earlier question,
   in part order) and evolution over all parts (:func:`fastsynth.synth.pipeline.select_questions`)
   -> each part's selected questions in ``synth/select/``. Evolution runs here, on the
   driver: which questions it gets depends on the filter, and what it returns goes back
   through the filter before the next part;
4. ``Map("answer")``, one part per part with selected questions: answers and QA
   (:func:`fastsynth.synth.pipeline.answer_selection`) -> ``synth/answer/``;
5. ``Global("out")`` runs :func:`fastsynth.synth.synthesize` over the first ``max_docs``
   deduplicated documents into ``synth/work/`` — a synthesis run directory with its own
   parts and resume — which finds every call group above (keyed by what it depends on;
   a missing or stale one is made there) and replays the filter, then writes the
   accepted pairs as ``synth/out/00000.parquet`` (the QA schema plus ``text`` =
   "Question: ... Answer: ...") and the rejected candidates to ``rejects/synth/`` with
   ``stage:reason``.

The output equals a synthesis that makes every call itself (the same calls in the same
request batches, whichever process makes them).

Counts are in question candidates: in = accepted + rejected (documents the synthesis
skipped at input count as rejected ``input:<reason>``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from fastsynth.atomic import write_parquet
from fastsynth.run.config import check, option
from fastsynth.run.records import read_parts, reject_table, write_rejects
from fastsynth.run.rundir import PartResult, part_path, rejects_path
from fastsynth.run.stage import Global, Map, Part, Stage, View


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
    gen_actors: int = option(2, "actors making the generation calls under --executor ray (each loads "
                                "the model); the local executor ignores it")
    gen_gpus: float = option(0.0, "GPUs each generation actor asks Ray for (e.g. 1 on a GPU cluster); "
                                  "the local executor ignores it")
    threads: int | None = option(None, "threads of the local generator (none: all cores; under "
                                       "--executor ray: each actor's CPUs)")
    engine_args: dict[str, Any] = option({}, "arguments of vllm.LLM for backend = vllm, as the TOML "
                                             "table [synth.engine_args] (e.g. dtype, max_model_len, "
                                             "gpu_memory_utilization, tensor_parallel_size)", flag=False)

    def __post_init__(self) -> None:
        check(self.max_docs >= 1, "synth.max_docs", f"must be >= 1, got {self.max_docs}")
        check(isinstance(self.gen_actors, int) and self.gen_actors >= 1, "synth.gen_actors",
              f"must be an integer >= 1, got {self.gen_actors!r}")
        check(self.gen_gpus >= 0, "synth.gen_gpus", f"must be >= 0, got {self.gen_gpus}")
        check(self.max_tokens >= 1, "synth.max_tokens", f"must be >= 1, got {self.max_tokens}")
        check(self.base_url is None or self.backend == "openai", "synth.base_url",
              "is only for backend = openai")
        check(self.backend != "vllm" or bool(self.model), "synth.model",
              "is required for backend = vllm: an HF checkpoint folder (fastsynth.model.save_hf "
              "writes the embedded model as one) or a model id vLLM can load")
        check(not self.engine_args or self.backend == "vllm", "synth.engine_args",
              f"is only for backend = vllm (got backend = {self.backend})")
        bad = [k for k in self.engine_args if not (isinstance(k, str) and k.isidentifier())]
        check(not bad, "synth.engine_args", f"keys must be vllm.LLM argument names, got {bad}")
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


#: Actors making generation calls under a distributed executor when the config does not
#: say (``gen_actors``): each loads the model once for the stage's gen, walks and answer
#: phases; parts go only to actors the cluster has room for.
GEN_ACTORS = 2


def gen_actors(config) -> int:
    """The actor pool's size for a generation Map phase (``config.gen_actors``)."""
    return int(getattr(config, "gen_actors", GEN_ACTORS))


def gen_resources(config) -> dict[str, float] | None:
    """Ray resources of one generation actor: ``num_gpus`` = ``config.gen_gpus`` when > 0."""
    gpus = float(getattr(config, "gen_gpus", 0.0) or 0.0)
    return {"num_gpus": gpus} if gpus > 0 else None

_GENERATORS: dict[tuple, object] = {}


def cached_generator(config) -> object:
    """This process's generator for ``config``'s ``backend``/``model``/``base_url``/
    ``cache_dir`` and optional ``engine_args`` (``(key, value)`` pairs of ``vllm.LLM``
    arguments), loaded once per process: per actor under Ray, once in a local run."""
    from fastsynth.llm import generator

    engine = dict(getattr(config, "engine_args", ()) or ())   # vllm.LLM arguments, if any
    # Under Ray the executor sets threads to the actor's CPUs: two actors on two cores with a
    # thread per core each would oversubscribe them (docs/scale.md, "Generation on an actor pool").
    threads = getattr(config, "threads", None) if config.backend == "local" else None
    spec = (config.backend, config.model, config.base_url, getattr(config, "cache_dir", None),
            repr(sorted(engine.items())), threads)
    if spec not in _GENERATORS:
        opts = {k: v for k, v in (("model", config.model), ("base_url", config.base_url),
                                  ("threads", threads)) if v}
        _GENERATORS[spec] = generator(config.backend, cache_dir=spec[3], **opts, **engine)
    return _GENERATORS[spec]


class DriverGenerator:
    """The generator of the driver's steps (``select``, ``out``), loaded on first use.

    Under Ray the generation calls run on the actors; the driver's steps replay their saved
    results and only need the model's name (provenance, the keys of saved call groups), so
    loading the model there (~10 s for the embedded one on 2 cores; a vLLM engine's start,
    minutes, and a GPU the driver's node may not have) is wasted unless a call is actually
    made (evolution, or a call group no actor saved). ``model_name`` of the local and vllm
    backends is known without loading (:func:`fastsynth.llm.known_model_name`); everything
    else loads :func:`cached_generator`'s.
    ``config``: anything :func:`cached_generator` takes."""

    def __init__(self, config) -> None:
        self._config = config
        self._loaded = None

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def model_name(self) -> str:
        if self._loaded is None:
            from fastsynth.llm import known_model_name

            name = known_model_name(self._config.backend, self._config.model)
            if name is not None:
                return name
        return self._real().model_name

    def _real(self):
        if self._loaded is None:
            self._loaded = cached_generator(self._config)
        return self._loaded

    def __getattr__(self, name: str):
        return getattr(self._real(), name)


def write_batch_inputs(folder, batches) -> list[str]:
    """Each document batch ``(part, docs, q1, q2)`` as ``folder/<part>.parquet`` (``id``,
    ``text``, ``q1``, ``q2``: the batch's question quotas); returns the part names."""
    names = []
    for part, batch, q1, q2 in batches:
        write_parquet(folder / f"{part}.parquet", pa.table({
            "id": [d.id for d in batch], "text": [d.text for d in batch],
            "q1": [q1[d.id] for d in batch], "q2": [q2[d.id] for d in batch]}))
        names.append(part)
    return names


def candidates_part(config, part: Part) -> PartResult:
    """One document batch's candidates (``part.inputs[0]``: its :func:`write_batch_inputs`
    file) saved in ``ROOT/<stage>/<phase>/`` (:func:`fastsynth.synth.pipeline.save_candidates`).
    ``config``: a :class:`SynthStageConfig` or anything with ``backend``, ``model``,
    ``base_url`` and ``synth_config()``."""
    from fastsynth.synth.calls import Driver
    from fastsynth.synth.documents import Doc
    from fastsynth.synth.pipeline import candidates_key, generate_candidates, save_candidates

    cfg = config.synth_config()
    t = pq.read_table(part.input_paths()[0]).to_pydict()
    batch = [Doc(i, x) for i, x in zip(t["id"], t["text"])]
    q1, q2 = dict(zip(t["id"], t["q1"])), dict(zip(t["id"], t["q2"]))
    gen = cached_generator(config)
    driver = Driver(gen, batch_size=cfg.gen_batch_size, retries=cfg.retries)
    t0 = time.perf_counter()
    cands, rejects, concepts = generate_candidates(batch, q1, q2, cfg, driver)
    calls = dict(driver.stats.__dict__)
    calls["part_seconds"] = time.perf_counter() - t0
    key = candidates_key(batch, q1, q2, cfg, gen)
    save_candidates(part.out.parent, part.id, key, cands, rejects, concepts, calls)
    return PartResult(info={"candidates": len(cands), "key": key})


def answer_spec(config) -> object:
    """What chooses the answer (and judge) generator: ``config.answer_backend`` etc. when
    set (the synth command's ``--answer-backend``), else ``config`` itself."""
    backend = getattr(config, "answer_backend", None)
    if not backend:
        return config
    from types import SimpleNamespace

    return SimpleNamespace(backend=backend, model=config.answer_model, base_url=config.answer_base_url,
                           cache_dir=getattr(config, "cache_dir", None),
                           engine_args=getattr(config, "answer_engine_args", ()))


def answer_generator(config) -> object:
    """This process's answer (and judge) generator (:func:`answer_spec`'s)."""
    return cached_generator(answer_spec(config))


def _batch_docs(paths) -> list:
    """The documents of :func:`write_batch_inputs` files, in order."""
    from fastsynth.synth.documents import Doc

    docs = []
    for p in paths:
        t = pq.read_table(p, columns=["id", "text"]).to_pydict()
        docs += [Doc(i, x) for i, x in zip(t["id"], t["text"])]
    return docs


def _concepts(paths) -> list:
    """Every batch's concepts (``<batch>.concepts.parquet`` files, in batch order)."""
    from fastsynth.synth.summary import CONCEPT_SCHEMA, read_concepts

    tabs = [pq.read_table(p, schema=CONCEPT_SCHEMA) for p in paths]
    return read_concepts(pa.concat_tables(tabs) if tabs else CONCEPT_SCHEMA.empty_table())


def walk_plan(config, doc_inputs, concept_files) -> tuple[list, list, tuple]:
    """``(docs, walk parts [(part, walks)], (graph, display))`` of the synthesis whose
    document batches are ``doc_inputs`` (:func:`write_batch_inputs` files) with concepts
    ``concept_files`` (both in batch order); no parts when Level 3 is off."""
    from fastsynth.synth.pipeline import level_quotas, walk_batches

    cfg = config.synth_config()
    docs = _batch_docs(doc_inputs)
    _, n_walks = level_quotas(len(docs), cfg)
    if not n_walks:
        return docs, [], (None, {})
    graph, display, parts, _ = walk_batches(_concepts(concept_files), n_walks, cfg)
    return docs, parts, (graph, display)


def walk_questions_part(config, part: Part) -> PartResult:
    """One walk batch's Level-3 questions, saved in ``ROOT/<stage>/<phase>/`` as the group
    :func:`fastsynth.synth.synthesize` looks up. ``part.inputs``: every document batch's
    input file, then every batch's concepts file (the graph needs them all)."""
    from fastsynth.synth.pipeline import walk_questions

    paths = part.input_paths()
    n = len(paths) // 2
    docs, parts, (graph, display) = walk_plan(config, paths[:n], paths[n:])
    n_q, n_rej = walk_questions(part.id, dict(parts)[part.id], graph, display, docs, config.synth_config(),
                                cached_generator(config), part.out.parent)
    return PartResult(info={"candidates": n_q, "rejected": n_rej})


def answer_part(config, part: Part) -> PartResult:
    """Answers and QA of one part's selected questions (``part.inputs[0]``: its
    ``<part>.selected.json`` in the select folder), saved in ``ROOT/<stage>/<phase>/``
    (:func:`fastsynth.synth.pipeline.answer_selection`)."""
    from fastsynth.synth.pipeline import answer_selection

    sel = part.input_paths()[0]
    gen = answer_generator(config)
    kept = answer_selection(sel.parent, part.id, part.out.parent, config.synth_config(), gen, gen,
                            eval_set=getattr(config, "eval_set", None))
    return PartResult(info={"kept": kept})


def _docs(config: SynthStageConfig, view: View) -> pa.Table:
    return read_parts(view.root, view.files("dedup", "out"), ["id", "text"]).slice(0, config.max_docs)


def gen_parts(config: SynthStageConfig, view: View, stage: str, phase: str) -> list[Part]:
    """The synthesis's document batches (as :func:`synthesize` will cut them), their inputs
    written to ``synth/gen-input/``."""
    from fastsynth.synth.documents import fit_documents
    from fastsynth.synth.pipeline import doc_batches

    cfg = config.synth_config()
    docs, _ = fit_documents(_docs(config, view).to_pylist(), cfg.max_doc_chars, cfg.on_long, cfg.max_chunks)
    names = write_batch_inputs(view.global_dir(stage).parent / f"{phase}-input", doc_batches(docs, cfg))
    return [Part(view.root, stage, phase, n, (f"{stage}/{phase}-input/{n}.parquet",)) for n in names]


def _gen_files(view: View, stage: str) -> tuple[list[str], list[str]]:
    names = view.finished.get(stage, {}).get("gen", [])
    return ([f"{stage}/gen-input/{n}.parquet" for n in names], [f"{stage}/gen/{n}.concepts.parquet" for n in names])


def walk_parts(config: SynthStageConfig, view: View, stage: str, phase: str) -> list[Part]:
    """The Level-3 walk batches (the graph built here once to count them)."""
    inputs, concepts = _gen_files(view, stage)
    _, parts, _ = walk_plan(config, [view.path(p) for p in inputs], [view.path(p) for p in concepts])
    return [Part(view.root, stage, phase, name, tuple(inputs + concepts)) for name, _ in parts]


def _folder(view: View, phase: str):
    return view.global_dir("synth").parent / phase


def select(config: SynthStageConfig, view: View) -> PartResult:
    """The filter and evolution over every part, in order (on the driver)."""
    from fastsynth.synth.pipeline import select_questions

    names = select_questions(_docs(config, view).to_pylist(), _folder(view, "select"),
                             generator=DriverGenerator(config), config=config.synth_config(),
                             pregenerated=[_folder(view, "gen"), _folder(view, "walks")])
    return PartResult(info={"parts": names})


def answer_parts(config: SynthStageConfig, view: View, stage: str, phase: str) -> list[Part]:
    """One part per part the select step kept questions of."""
    folder = _folder(view, "select")
    names = sorted(p.name[:-len(".selected.json")] for p in folder.glob("*.selected.json"))
    return [Part(view.root, stage, phase, n, (f"{stage}/select/{n}.selected.json",)) for n in names]


def generate(config: SynthStageConfig, view: View) -> PartResult:
    from fastsynth.synth import synthesize
    from fastsynth.synth.provenance import QA_SCHEMA, REJECT_SCHEMA

    docs = _docs(config, view)
    work = view.global_dir("synth").parent / "work"
    summary = synthesize(docs.to_pylist(), work, generator=DriverGenerator(config),
                         config=config.synth_config(), show_progress=False, redo_damaged=True,
                         pregenerated=[_folder(view, f) for f in ("gen", "walks", "select", "answer")])
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


STAGE = Stage("synth", SynthStageConfig,
              (Map("gen", candidates_part, gen_parts, resources=gen_resources, actors=gen_actors),
               Map("walks", walk_questions_part, walk_parts, resources=gen_resources, actors=gen_actors),
               Global("select", select),
               Map("answer", answer_part, answer_parts, resources=gen_resources, actors=gen_actors),
               Global("out", generate, counts=True)),
              needs=("dedup",),
              output="out", unit="questions",
              description="SynthLLM questions (levels 1-3), answers and QA checks")
