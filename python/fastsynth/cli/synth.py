"""fastsynth synth: SynthLLM question-answer synthesis from a corpus (see fastsynth.synth)."""
from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass

from fastsynth.cli.local_options import add_engine_options, parse_engine_args
from fastsynth.errors import ConfigError


def _ints(s: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in s.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def _floats(s: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in s.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="synthesize question-answer data (SynthLLM levels 1-3)",
                       description="Generate grounded question-answer pairs from INPUT into the run "
                                   "directory OUT (resumable: re-run the same command to continue).")
    p.add_argument("input", help="corpus: .jsonl/.parquet/.txt file, folder, or builtin:python-docs")
    p.add_argument("-o", "--output", required=True, help="run directory")
    p.add_argument("--levels", type=_ints, default=(1, 2, 3), help="levels to run (default 1,2,3)")
    p.add_argument("--shares", type=_floats, default=(30, 40, 30),
                   help="Level-1,2,3 shares of the question budget (default 30,40,30)")
    p.add_argument("--questions-per-doc", type=float, default=2.0, help="question budget per document")
    p.add_argument("--limit", type=int, default=None, help="use only the first N documents")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="local", help="generator backend: local, openai, vllm")
    p.add_argument("--model", default=None, help="model path (local/vllm) or name (openai)")
    p.add_argument("--base-url", default=None, help="server URL for the openai backend")
    p.add_argument("--answer-backend", default=None, help="backend of a separate answer model")
    p.add_argument("--answer-model", default=None)
    p.add_argument("--answer-base-url", default=None)
    p.add_argument("--cache-dir", default=None, help="response cache folder (re-runs reuse responses)")
    p.add_argument("--batch-docs", type=int, default=8, help="documents per resumable part")
    p.add_argument("--max-doc-chars", type=int, default=2000, help="document characters per prompt")
    p.add_argument("--on-long", choices=("chunk", "skip"), default="chunk")
    p.add_argument("--answer-samples", type=int, default=1, help="k > 1: self-consistency over k answers")
    p.add_argument("--evolve", type=float, default=0.0, metavar="FRACTION",
                   help="share of questions to evolve (Evol-Instruct)")
    p.add_argument("--judge-threshold", type=float, default=None, help="enable the LLM judge (1-10)")
    p.add_argument("--eval-set", default=None, help="corpus of evaluation texts to decontaminate against")
    p.add_argument("--dedup", choices=("auto", "exact"), default="auto")
    p.add_argument("--no-embeddings", action="store_true", help="skip the embedding diversity measure")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run in OUT")
    p.add_argument("--redo-damaged", action="store_true",
                   help="generate again the finished parts whose files are damaged")
    p.add_argument("--max-tokens", type=int, default=None, help="cap new tokens of every request")
    add_engine_options(p)  # for --backend vllm and/or --answer-backend vllm
    from fastsynth.run.executor_options import add_executor_arguments

    add_executor_arguments(p)  # ray: the generation calls on an actor pool, OUT/gen (docs/scale.md)
    p.add_argument("--gen-actors", type=int, default=2,
                   help="--executor ray: actors making the generation calls (each loads the model)")
    p.add_argument("--gen-gpus", type=float, default=0.0,
                   help="--executor ray: GPUs each generation actor asks Ray for (e.g. 1)")
    p.set_defaults(func=run)


def _gen(backend: str, model: str | None, base_url: str | None, cache_dir: str | None,
         engine: dict | None = None):
    from fastsynth.llm import generator

    opts = dict(engine or {}) if backend == "vllm" else {}
    if model:
        opts["model"] = model
    if base_url:  # run() checked it belongs to an openai backend
        opts["base_url"] = base_url
    return generator(backend, cache_dir=cache_dir, **opts)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fastsynth.run.executor_options import executor_from_args
    from fastsynth.synth.config import SynthConfig
    from fastsynth.synth.pipeline import synthesize

    if args.gen_actors < 1:
        raise ConfigError(f"--gen-actors must be >= 1, got {args.gen_actors}")
    if args.gen_gpus < 0:
        raise ConfigError(f"--gen-gpus must be >= 0, got {args.gen_gpus}")
    executor = executor_from_args(args)

    if args.limit is not None and args.limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {args.limit}")
    kw = {}
    if args.max_tokens is not None:
        kw = {k: args.max_tokens for k in ("question_max_tokens", "concept_max_tokens", "answer_max_tokens",
                                           "evolve_max_tokens")}
    cfg = SynthConfig(levels=args.levels, shares=args.shares, questions_per_doc=args.questions_per_doc,
                      seed=args.seed, batch_docs=args.batch_docs, max_doc_chars=args.max_doc_chars,
                      on_long=args.on_long, answer_samples=args.answer_samples, evolve_fraction=args.evolve,
                      judge_threshold=args.judge_threshold, dedup=args.dedup,
                      diversity_embeddings=not args.no_embeddings, **kw)
    engine = parse_engine_args(args.engine_arg)
    if engine and "vllm" not in (args.backend, args.answer_backend):
        raise ConfigError("--engine-arg is only for --backend vllm or --answer-backend vllm "
                          f"(got --backend {args.backend})")
    for flag, backend, model in (("--model", args.backend, args.model),
                                 ("--answer-model", args.answer_backend, args.answer_model)):
        if backend == "vllm" and not model:
            raise ConfigError(f"{flag} is required with the vllm backend: an HF checkpoint folder "
                              "(fastsynth.model.save_hf writes the embedded model as one) or a "
                              "model id vLLM can load")
    if args.base_url and args.backend != "openai":
        raise ConfigError("--base-url is only for the openai backend")
    if args.answer_base_url and args.answer_backend != "openai":
        raise ConfigError("--answer-base-url is only for --answer-backend openai")
    if executor.name == "local":
        gen = _gen(args.backend, args.model, args.base_url, args.cache_dir, engine)
        ans = (_gen(args.answer_backend, args.answer_model, args.answer_base_url, args.cache_dir, engine)
               if args.answer_backend else None)
    else:
        # The actors make the calls; this process only replays them, so its generators load
        # on first use, not here (a vLLM engine: minutes, and a GPU the driver may lack)
        from fastsynth.run.stages.synth import DriverGenerator, answer_spec

        config = _generation_config(args, cfg, engine)
        gen = DriverGenerator(config)
        ans = DriverGenerator(answer_spec(config)) if args.answer_backend else None
    from fastsynth.corpus import read

    records = read(args.input)
    if args.limit is not None:
        records = itertools.islice(records, args.limit)
    pregenerated = None
    if executor.name != "local":
        records = list(records)
        pregenerated = _generation_on(executor, records, args, cfg, gen, ans, config)
    summary = synthesize(records, args.output, generator=gen, answer_generator=ans, config=cfg,
                         eval_set=args.eval_set, overwrite=args.overwrite,
                         redo_damaged=args.redo_damaged, pregenerated=pregenerated)
    if pregenerated is not None:
        import shutil

        shutil.rmtree(Path(args.output) / "gen", ignore_errors=True)  # its records are in qa/ now
    _print(summary, args.output)
    return 0


@dataclass(frozen=True)
class _Generation:
    """What a worker needs to make generation calls (``synth_config()`` as the stage's)."""

    backend: str
    model: str | None
    base_url: str | None
    cache_dir: str | None
    synth: object
    engine_args: tuple = ()   # (key, value) pairs of vllm.LLM arguments (--engine-arg)
    answer_backend: str | None = None
    answer_model: str | None = None
    answer_base_url: str | None = None
    answer_engine_args: tuple = ()
    eval_set: str | None = None
    gen_actors: int = 2
    gen_gpus: float = 0.0
    threads: int | None = None    # set per actor by the Ray executor (its CPUs)

    def synth_config(self):
        return self.synth


def _generation_config(args: argparse.Namespace, cfg, engine: dict[str, object]) -> _Generation:
    """The workers' :class:`_Generation` for these arguments; ``engine``: the parsed
    ``--engine-arg`` pairs (for whichever backend is vllm)."""
    return _Generation(args.backend, args.model, args.base_url, args.cache_dir, cfg,
                       tuple(engine.items()) if args.backend == "vllm" else (),
                       args.answer_backend, args.answer_model, args.answer_base_url,
                       tuple(engine.items()) if args.answer_backend == "vllm" else (),
                       args.eval_set, args.gen_actors, args.gen_gpus)


def _generation_on(executor, records: list[dict], args: argparse.Namespace, cfg, gen, ans,
                   config: _Generation) -> list:
    """The synthesis's generation calls made as parts on ``executor`` (actor pools under
    Ray), in OUT/gen/ (docs/scale.md, "Generation on an actor pool"): every document
    batch's candidates, then every walk batch's Level-3 questions, then the ordered
    filter and evolution here (:func:`fastsynth.synth.pipeline.select_questions`), then
    every part's answers and QA. Groups already saved for these settings are not made
    again. Returns the folders for :func:`fastsynth.synth.synthesize`'s ``pregenerated``.
    ``config``: what the workers get (:func:`_generation_config`)."""
    from pathlib import Path

    from fastsynth.run.stage import Part
    from fastsynth.run.stages import synth as stage
    from fastsynth.synth.pipeline import (candidates_key, doc_batches, load_candidates, load_group,
                                          select_questions)
    from fastsynth.synth.documents import fit_documents

    work = Path(args.output) / "gen"  # parts, logs and a local Ray's temp dir; swept after success
    if args.overwrite:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    docs, _ = fit_documents(records, cfg.max_doc_chars, cfg.on_long, cfg.max_chunks)
    batches = doc_batches(docs, cfg)
    folders = {k: work / "candidates" / k for k in ("docs", "walks", "select", "answers")}
    gen_phase, walk_phase, _, answer_phase, _ = stage.STAGE.phases
    try:
        with executor.stage_scope():   # one actor pool for the three phases (Ray)
            # 1. candidates of every document batch (the select step needs them all, finished parts too)
            todo = [b for b in batches if load_candidates(folders["docs"], b[0],
                                                          candidates_key(b[1], b[2], b[3], cfg, gen)) is None]
            stage.write_batch_inputs(work / "input", todo)
            executor.map_parts(stage.candidates_part, config,
                               [Part(str(work), "candidates", "docs", b[0], (f"input/{b[0]}.parquet",)) for b in todo],
                               lambda part, res: None, phase=gen_phase)
            # 2. Level-3 questions of every walk batch
            stage.write_batch_inputs(work / "input", [b for b in batches if b not in todo])
            inputs = [f"input/{b[0]}.parquet" for b in batches]
            concepts = [f"candidates/docs/{b[0]}.concepts.parquet" for b in batches]
            _, wparts, _ = stage.walk_plan(config, [work / p for p in inputs], [work / p for p in concepts])
            executor.map_parts(stage.walk_questions_part, config,
                               [Part(str(work), "candidates", "walks", n, tuple(inputs + concepts)) for n, _ in wparts
                                if not (folders["walks"] / f"{n}.cands.json").exists()],
                               lambda part, res: None, phase=walk_phase)
            # 3. the filter and evolution, in order, here; 4. answers and QA of every part
            names = select_questions(records, folders["select"], generator=gen, answer_generator=ans, config=cfg,
                                     eval_set=args.eval_set, pregenerated=[folders["docs"], folders["walks"]])
            import json

            todo_a = [n for n in names if load_group([folders["answers"]], f"{n}.answer", json.loads(
                (folders["select"] / f"{n}.selected.json").read_text())["key"]) is None]
            executor.map_parts(stage.answer_part, config,
                               [Part(str(work), "candidates", "answers", n, (f"candidates/select/{n}.selected.json",))
                                for n in todo_a],
                               lambda part, res: None, phase=answer_phase)
    finally:
        getattr(executor, "shutdown", lambda: None)()
    return list(folders.values())


def _print(s: dict, out: str) -> None:
    w = sys.stdout.write
    if "message" in s:
        w(s["message"] + "\n")
    y = s["yield"]
    req = s["requested_questions"]
    w(f"{s['total']} QA pairs -> {out}/qa/ (level1 {y['level1']}/{req['level1']} requested, "
      f"level2 {y['level2']}/{req['level2']}, level3 {y['level3']}/{req['level3']}; {s['evolved']} evolved)\n")
    t = s["tokens"]
    w(f"tokens: {t['prompt']} prompt, {t['completion']} completion, "
      f"{t['completion_tokens_per_s']:.1f} completion tok/s, {t['generator_errors']} generator errors\n")
    for key, reasons in s["rejections"].items():
        w(f"rejected {key}: " + ", ".join(f"{r} {n}" for r, n in reasons.items()) + "\n")
    d = s["diversity"]
    for key in ("all", "level1", "level2", "level3"):
        v = d[key]
        w(f"diversity {key}: n={v['n']:.0f} concept coverage={_f(v['coverage'])} entropy={_f(v['entropy_bits'])} "
          f"bits, mean pairwise sim={_f(v['mean_pairwise_similarity'])}, "
          f"set gzip ratio={_f(v['set_gzip_ratio'])} (compressed/original)\n")
    w(f"summary: {out}/summary.json\n")


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"

