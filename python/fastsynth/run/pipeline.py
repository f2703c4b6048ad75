"""``fastsynth run``: the stages in order, their configs, presets, and :func:`run`.

A run config is a TOML file::

    [run]
    source = "builtin:python-docs"    # becomes ingest.source
    stages = ["ingest", "score", ...]  # optional: a prefix-closed subset, in order
    [score]
    gzip_band = [0.3, 0.5]
    [synth]
    max_docs = 24

Each table is one stage's config dataclass; an unknown table (stage) or key is an error
naming it and the file. A preset (``quick``, ``default``) is a set of such tables; the
file's values go over the preset's, which go over the dataclass defaults.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastsynth.errors import ConfigError
from fastsynth.partstore import MANIFEST
from fastsynth.run.config import as_dict, check, from_mapping, option
from fastsynth.run.executor import LocalExecutor, run_stage
from fastsynth.run.rundir import RunDir
from fastsynth.run.stage import Stage
from fastsynth.run.stages import dedup, ingest, mix, plan, qa_dedup, score, synth, train

#: Every stage of a full run, in the order the data flows.
STAGES: tuple[Stage, ...] = (ingest.STAGE, score.STAGE, dedup.STAGE, synth.STAGE, qa_dedup.STAGE,
                             mix.STAGE, train.TOKENIZE, train.TRAIN, plan.STAGE)
BY_NAME = {s.name: s for s in STAGES}


@dataclass(frozen=True)
class RunConfig:
    source: str | None = option(None, "corpus to build from (sets ingest.source)")
    stages: tuple[str, ...] = option(tuple(s.name for s in STAGES), "stages to run, in order")

    def __post_init__(self) -> None:
        unknown = [s for s in self.stages if s not in BY_NAME]
        check(not unknown, "run.stages", f"names unknown stage(s) {', '.join(unknown)} "
                                         f"(stages: {', '.join(BY_NAME)})")


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # a few minutes on 2 quiet cores: 200 documents scored and deduplicated, the first
    # 1,200 characters of 12 of them synthesized from with the embedded SmolLM2-135M (~45 new
    # tokens/s on such a machine; ~4,000 tokens in all), short generations.
    "quick": {"ingest": {"limit": 200, "part_docs": 50},
              "synth": {"max_docs": 12, "max_chunks": 1, "questions_per_doc": 1.5, "max_tokens": 64,
                        "batch_docs": 6},
              # 2 sizes x 3 budgets of tiny models on a 512-token BPE (trained on the mix by
              # the tokenize stage; the sweep trains on its shards): ~0.4M training tokens in
              # all, a minute or so on 2 cores; a law fitted to 6 such runs is weak (the
              # report shows its R^2 and intervals as they come).
              "tokenize": {"tokenizer": "bpe:512"},
              "train": {"sizes": ("1x32:3e-3", "2x64:2.5e-3"), "budgets": (16_384, 32_768, 65_536),
                        "seq_len": 128, "micro_batch_rows": 4,
                        "heldout_permille": 100, "eval_tokens": 8_192, "n_bootstrap": 50,
                        # every 4th start found a degenerate optimum on these 6 runs (the
                        # sweep then divides by zero); every 2nd finds the full grid's fit
                        "fit_start_stride": 2},
              "plan": {}},
    # the whole built-in corpus, 100 documents synthesized from.
    "default": {"ingest": {"part_docs": 200},
                "synth": {"max_docs": 100, "questions_per_doc": 2.0, "max_tokens": 96}},
}


@dataclass(frozen=True)
class Plan:
    """A resolved run: the stages to run and each one's config."""

    run: RunConfig
    configs: dict[str, Any]

    def manifest_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stages": list(self.run.stages)}
        for name in self.run.stages:
            out[name] = as_dict(self.configs[name])
        return out


def load_config(path: str | os.PathLike | None = None, *, preset: str | None = None,
                overrides: dict[str, dict[str, Any]] | None = None) -> Plan:
    """Resolve defaults <- ``preset`` <- the TOML file at ``path`` <- ``overrides``."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} (presets: {', '.join(PRESETS)})")
    tables: dict[str, dict[str, Any]] = {k: dict(v) for k, v in PRESETS.get(preset or "", {}).items()}
    where = "preset " + preset if preset else "defaults"
    if path is not None:
        where = str(path)
        for name, table in _read_toml(path).items():
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: top-level key {name!r} must be a table like [{name}]")
            if name != "run" and name not in BY_NAME:
                raise ConfigError(f"{path}: unknown stage [{name}] (stages: {', '.join(BY_NAME)}; "
                                  "run settings go in [run])")
            tables.setdefault(name, {}).update(table)
    for name, table in (overrides or {}).items():
        tables.setdefault(name, {}).update(table)
    run_cfg = from_mapping(RunConfig, tables.pop("run", {}), f"{where} [run]")
    _check_order(run_cfg.stages)
    configs = {}
    for stage in STAGES:
        table = dict(tables.get(stage.name, {}))
        if stage.name == "ingest" and run_cfg.source is not None:
            table["source"] = run_cfg.source
        configs[stage.name] = from_mapping(stage.config, table, f"{where} [{stage.name}]")
    return Plan(run_cfg, configs)


def _read_toml(path: str | os.PathLike) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def _check_order(names: tuple[str, ...]) -> None:
    pos = {n: i for i, n in enumerate(names)}
    for n in names:
        for need in BY_NAME[n].needs:
            if need not in pos:
                raise ConfigError(f"run.stages: stage {n!r} needs stage {need!r}, which is not listed")
            if pos[need] > pos[n]:
                raise ConfigError(f"run.stages: stage {n!r} must come after {need!r}")


def run(plan_: Plan, out: str | os.PathLike, *, overwrite: bool = False,
        executor: LocalExecutor | None = None, report: bool = True) -> RunDir:
    """Run (or resume) every stage of ``plan_`` in the run directory ``out``, then write
    ``report.md``/``report.html``. Returns the opened run directory."""
    # Ray: a Map phase asking for resources no node has fails here, before any stage runs;
    # a new run's check comes before its manifest, so the corrected config can use the folder
    preflight = getattr(executor, "check_stages", None)
    new = overwrite or not (Path(out) / MANIFEST).exists()
    if preflight is not None and new:
        preflight(out, [(BY_NAME[n], _job_config(plan_, n)) for n in plan_.run.stages])
    rd = RunDir(out, plan_.manifest_config(), overwrite=overwrite)
    rd.manifest.setdefault("started", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    for name in plan_.run.stages:
        rd.stage(name).setdefault("description", BY_NAME[name].description)
    rd.save()
    todo = [n for n in plan_.run.stages if rd.stage(n).get("state") != "done"]
    if preflight is not None and not new and todo:
        preflight(rd.root, [(BY_NAME[n], _job_config(plan_, n)) for n in todo])
    for name in plan_.run.stages:
        run_stage(rd, BY_NAME[name], _job_config(plan_, name), executor)
    rd.manifest["pending_stages"] = [n for n in plan_.run.stages
                                     if rd.manifest["stages"][n]["state"] == "pending"]
    rd.save()
    if report:
        from fastsynth.run.report import write_report
        write_report(rd)
    return rd


def _job_config(plan_: Plan, name: str) -> Any:
    """What stage ``name`` runs with: its config; for ``tokenize``, with the train stage's
    held-out share beside it, so a BPE never learns from held-out documents
    (docs/architecture.md, "The training half")."""
    if name == "tokenize" and "train" in plan_.configs:
        return train.TokenizeJob(plan_.configs["tokenize"], plan_.configs["train"].heldout_permille)
    return plan_.configs[name]


def stage_table(plan_: Plan) -> list[tuple[str, str]]:
    return [(n, BY_NAME[n].description) for n in plan_.run.stages]


__all__ = ["STAGES", "PRESETS", "RunConfig", "Plan", "load_config", "run"]
