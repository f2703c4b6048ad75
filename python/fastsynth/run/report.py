"""The run's report: ``RUN/report.md`` and a self-contained ``RUN/report.html``.

Built from the manifest and the stages' files (never from memory of the process that
ran them, so a resumed run reports the same): the funnel (records in/out/rejected per
stage and why), the gzip-ratio histogram, dedup cluster sizes, the Level-3 concept
graph (statistics and a drawing), sample questions per level, the mix, the training
half (sweep runs, training curves, the fitted law and its held-out check), and the budget
plan with the constants fitted on this run. Figures go to
``RUN/figures/``. Rendered through :class:`fastsynth.report.Document`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from fastsynth.errors import DependencyError
from fastsynth.report import Document
from fastsynth.run.rundir import RunDir


def write_report(rd: RunDir) -> dict[str, Path]:
    root, m = rd.root, rd.manifest
    figs = root / "figures"
    stages = m["stages"]
    order = m["config"].get("stages", list(stages))
    doc = Document(f"fastsynth run — {root.name}")
    v = m.get("versions", {})
    done = [n for n in order if stages.get(n, {}).get("state") == "done"]
    pending = [n for n in order if stages.get(n, {}).get("state") == "pending"]
    doc.p(f"fastsynth {v.get('fastsynth')} · Python {v.get('python')} · pyarrow {v.get('pyarrow')} · "
          f"created {m.get('created')} · updated {m.get('updated')}. Stages done: {len(done)} of "
          f"{len(order)}" + (f"; pending: {', '.join(pending)}." if pending else "."))
    _funnel(doc, order, stages, figs)
    _optional(doc, "Quality scores", lambda: _scores(doc, rd, figs))
    _optional(doc, "Near-duplicates", lambda: _dedup(doc, stages, figs))
    _optional(doc, "Concept graph", lambda: _graph(doc, root, figs))
    _optional(doc, "Sample questions", lambda: _samples(doc, root, stages))
    _mix(doc, stages)
    _training(doc, root, order, stages, figs)
    _plan(doc, root, stages)
    return doc.write(root, "report")


def _optional(doc: Document, what: str, fn: Any) -> None:
    try:
        fn()
    except DependencyError as e:
        doc.h(what)
        doc.p(f"Figure skipped: {e}")


def _funnel(doc: Document, order: list[str], stages: dict, figs: Path) -> None:
    doc.h("Funnel")
    rows, labels, ins, outs = [], [], [], []
    for n in order:
        st = stages.get(n, {})
        c = st.get("counts") or {}
        why = "; ".join(f"{k} {v:,}" for k, v in (c.get("rejected_by_reason") or {}).items())
        if st.get("state") == "pending":
            why = f"PENDING: {st.get('reason', '')}"
        rows.append([n, st.get("state", "not run"), st.get("unit", ""),
                     _n(c.get("in")), _n(c.get("out")), _n(c.get("rejected")),
                     "yes" if c.get("balanced") else ("-" if not c else "NO"), why or "-",
                     f"{st['seconds']:.1f}" if "seconds" in st else "-"])
        if c and c.get("in") is not None and st.get("unit") in ("documents",):
            labels.append(n)
            ins.append(c["in"])
            outs.append(c["out"])
    doc.table(["stage", "state", "unit", "in", "out", "rejected", "in = out + rejected",
               "rejected because", "seconds"], rows)
    if labels:
        from fastsynth.report.charts import bars_png
        doc.figure(bars_png(figs / "funnel.png", labels, {"in": ins, "out": outs},
                            title="Documents in and out per stage", ylabel="documents"),
                   "Documents in and out of each corpus stage")


def _n(x: Any) -> str:
    return "-" if x is None else f"{x:,}"


def _scores(doc: Document, rd: RunDir, figs: Path) -> None:
    parts = rd.parts("score", "out")
    if not parts:
        return
    import numpy as np

    from fastsynth.report.histogram import histogram_png

    values = np.concatenate([pq.read_table(rd.root / "score" / "scores" / f"{p}.parquet",
                                           columns=["gzip_ratio"]).column("gzip_ratio").to_numpy()
                             for p in parts])
    band = rd.manifest["config"].get("score", {}).get("gzip_band")
    doc.h("Quality scores")
    doc.p("gzip ratio = compressed/original size (zlib, level "
          f"{rd.manifest['config'].get('score', {}).get('level', 6)}); lower = more compressible. "
          f"Median {np.median(values):.3f} over {values.size:,} documents.")
    doc.figure(histogram_png(values, figs / "gzip_ratio.png", title="gzip ratio of the ingested documents",
                             xlabel="gzip ratio (compressed/original)",
                             band=tuple(band) if band else None, band_label="filter band"),
               "gzip-ratio histogram with the filter's band")


def _dedup(doc: Document, stages: dict, figs: Path) -> None:
    info = stages.get("dedup", {}).get("phases", {}).get("cluster", {}).get("global", {}).get("info")
    if not info:
        return
    doc.h("Near-duplicates")
    hist = {int(k): v for k, v in info["cluster_size_histogram"].items()}
    doc.p(f"{info['documents']:,} documents, {info['removed']:,} removed as near-duplicates; LSH "
          f"{info['bands']} bands x {info['rows']} rows; candidate pairs {info['pairs']['candidates']:,}, "
          f"verified {info['pairs']['verified']:,}, matched {info['pairs']['matched']:,}.")
    doc.table(["cluster size", "clusters"], [[k, f"{v:,}"] for k, v in sorted(hist.items())])
    if hist:
        from fastsynth.report.charts import bars_png
        doc.figure(bars_png(figs / "dedup_clusters.png", [str(k) for k in sorted(hist)],
                            {"clusters": [hist[k] for k in sorted(hist)]}, title="Dedup cluster sizes",
                            ylabel="clusters", log=True), "Clusters by size (size 1: no duplicate)")


def _graph(doc: Document, root: Path, figs: Path) -> None:
    work = root / "synth" / "work"
    if not (work / "manifest.json").exists():
        return
    from fastsynth.synth import level3
    from fastsynth.synth.rundir import RunDir as SynthRunDir
    from fastsynth.synth.summary import CONCEPT_SCHEMA, read_concepts

    manifest = json.loads((work / "manifest.json").read_text())
    srd = SynthRunDir.__new__(SynthRunDir)  # read-only view: no config check, no writes
    srd.root, srd.manifest = work, manifest
    concepts = read_concepts(srd.read("concepts", CONCEPT_SCHEMA))
    if not concepts:
        return
    graph, display = level3.build_graph(concepts)
    edges = {kind: {frozenset((a, b)) for a, nb in graph.counts[kind].items() for b in nb if a != b}
             for kind in ("tt", "tc", "cc")}
    degree: dict[str, int] = {}
    for kind in ("tc", "cc"):
        for e in edges[kind]:
            for x in e:
                degree[x] = degree.get(x, 0) + 1
    doc.h("Concept graph (Level 3)")
    n_docs = len(graph.doc_concepts)
    seen: dict[str, int] = {}
    for cs_of_doc in graph.doc_concepts.values():
        for c in cs_of_doc:
            seen[c] = seen.get(c, 0) + 1
    doc.table(["documents", "topics", "concepts", "topic-topic edges", "topic-concept edges",
               "concept-concept edges", "concepts in 2+ documents"],
              [[n_docs, len(graph.topics), len(graph.concepts), len(edges["tt"]), len(edges["tc"]),
                len(edges["cc"]), sum(1 for c in graph.concepts if seen.get(c, 0) > 1)]])
    top = sorted(graph.topics, key=lambda t: -degree.get(t, 0))[:8]
    cs = sorted(graph.concepts, key=lambda c: -degree.get(c, 0))[:32]
    nodes = top + [c for c in cs if c not in top]
    idx = {n: i for i, n in enumerate(nodes)}
    pairs = sorted({tuple(sorted((idx[a], idx[b]))) for kind in ("tt", "tc", "cc") for e in edges[kind]
                    for a, b in [tuple(e)] if a in idx and b in idx})
    from fastsynth.report.charts import graph_png
    doc.figure(graph_png(figs / "concept_graph.png", [display.get(n, n) for n in nodes],
                         ["topic" if n in top else "concept" for n in nodes], pairs,
                         title=f"Concept graph: the {len(nodes)} best-connected nodes"),
               "Topics and concepts with the most edges, and the edges between them")


def _samples(doc: Document, root: Path, stages: dict) -> None:
    src = root / "qa_dedup" / "out" / "00000.parquet"
    if stages.get("qa_dedup", {}).get("state") != "done":
        src = root / "synth" / "out" / "00000.parquet"
        if stages.get("synth", {}).get("state") != "done":
            return
    t = pq.read_table(src, columns=["level", "question", "answer", "source_ids"]).to_pylist()
    doc.h("Sample questions per level")
    rows = []
    for lv in (1, 2, 3):
        picked = [r for r in t if r["level"] == lv][:3]
        rows += [[lv, r["question"], (r["answer"] or "")[:200], ", ".join(r["source_ids"])[:60]] for r in picked]
        if not picked:
            rows.append([lv, "(none accepted)", "", ""])
    doc.table(["level", "question", "answer (first 200 chars)", "sources"], rows)


def _mix(doc: Document, stages: dict) -> None:
    info = stages.get("mix", {}).get("phases", {}).get("out", {}).get("global", {}).get("info")
    if not info:
        return
    doc.h("Mix")
    doc.p(f"{info['rows']:,} rows: {info['organic_chars']:,} organic and {info['synthetic_chars']:,} "
          f"synthetic characters — synthetic share {info['synthetic_share']:.1%} (asked "
          f"{info['synthetic_share_asked']:.0%}; a synthetic text repeats at most "
          f"{info['max_repeat_used']} times).")


def _training(doc: Document, root: Path, order: list[str], stages: dict, figs: Path) -> None:
    doc.h("Training, evaluation and the fitted law")
    rows = []
    for n in ("tokenize", "train"):
        st = stages.get(n, {})
        if n not in order:
            continue
        state = st.get("state", "not run")
        note = st.get("reason", "") if state == "pending" else ""
        if n == "tokenize" and state == "done":
            s = st["phases"]["out"]["global"]["info"]["summary"]
            note = f"{s['tokens']:,} tokens in {s['shards']} shard(s), tokenizer {s['tokenizer']}"
        if n == "train" and state == "done":
            c = st["counts"]
            note = f"{c['out']} of {c['in']} sweep runs trained and evaluated; law fitted"
        rows.append([n, state, note])
    doc.table(["stage", "state", "result"], rows)
    info = stages.get("train", {}).get("phases", {}).get("sweep", {}).get("global", {}).get("info")
    if stages.get("train", {}).get("state") != "done" or not info:
        doc.p("Training curves, the law fitted to this run (with R^2 and intervals) and the "
              "plan with fitted constants appear here once the train stage has run; nothing is "
              "shown in their place.")
        return
    runs, fit = info["runs"], info["fit"]
    data = info.get("data") or {}
    made = (f"trained on the tokenize stage's shards as they are (tokenizer "
            f"{str(data.get('tokenizer_fingerprint', ''))[:12]}, {data.get('vocab_size', 0):,} tokens; "
            "a BPE there learned only from the training side's documents)"
            if data.get("source") == "shards" else "the mix tokenized by the sweep")
    doc.p(f"{len(runs)} runs on this run's mix, {made}: {info['unique_tokens']:,} unique training "
          f"tokens, {info['heldout_tokens']:,} held-out tokens (documents held out by a hash of "
          "their record id). N = non-embedding parameters, D = real "
          "training tokens, loss = held-out cross-entropy (nats/token) on the same batches for "
          f"every run. Sweep files: {info['files']['runs']}, {info['files']['fit']}, "
          f"{info['files'].get('html', '')}.")
    doc.table(["model", "N (non-emb.)", "D tokens", "epochs", "steps", "final train loss",
               "eval loss", "tokens/s", "seconds"],
              [[r["name"], f"{r['n_params']:,}", f"{r['n_tokens']:,}", f"{r['epochs']:.2f}", r["steps"],
                f"{r['final_train_loss']:.4f}", f"{r['eval_loss']:.4f}", f"{r['tokens_per_s']:.0f}",
                f"{r['seconds']:.1f}"] for r in runs])
    _optional(doc, "Training curves", lambda: _curves(doc, root / info["curves"], figs))
    doc.h("Fitted law")
    iv = fit["intervals_95"]
    odd = fit_warnings(fit)
    weak = fit["n_points"] < 10 or fit["r2"] < 0.95 or not fit["converged"] or bool(odd)
    doc.p(f"L(N, D) = E + A / N^alpha + B / D^beta fitted to {fit['n_points']} runs: R^2 = "
          f"{fit['r2']:.4f}{'' if fit['converged'] else ' (NOT converged: ' + fit['message'] + ')'}."
          + (" **A weak fit**: few, tiny runs (5 parameters from "
             f"{fit['n_points']} points)" + ("; " + "; ".join(odd) if odd else "")
             + ". Read its constants and intervals as this run's sanity check, not as a law to "
             "plan with." if weak else ""))
    doc.table(["parameter", "value", "95% bootstrap interval"],
              [[k, f"{fit[k]:.5g}", f"[{iv[k][0]:.5g}, {iv[k][1]:.5g}]"]
               for k in ("E", "A", "B", "alpha", "beta")])
    h = fit["heldout"]
    doc.h("Held-out check")
    doc.p(f"The law fitted without the largest-compute run ({h['run']}, {h['n_tokens']:,.0f} tokens) "
          f"predicts its eval loss {h['predicted_eval_loss']:.4f} (95% interval "
          f"{h['predicted_interval_95'][0]:.4f} .. {h['predicted_interval_95'][1]:.4f}); measured "
          f"{h['measured_eval_loss']:.4f}: {100 * h['relative_error']:.2f}% off.")


def fit_warnings(fit: dict) -> list[str]:
    """What makes a fitted law's constants implausible even where R^2 is high: an irreducible
    loss E at ~0 (the fit traded it for the power terms), or an exponent far from the 0.2-0.8
    that published fits of language models find (Hoffmann et al. 0.34 / 0.28; Epoch's refit
    0.35 / 0.37). Plain sentences, empty when nothing is off."""
    out = []
    if fit["E"] < 1e-3:
        out.append(f"E = {fit['E']:.3g} is at ~0, so the irreducible loss is not identified")
    for k in ("alpha", "beta"):
        if not 0.05 <= fit[k] <= 2.0:
            out.append(f"{k} = {fit[k]:.3g} is far outside the 0.2-0.8 of published fits")
    return out


def _curves(doc: Document, runs_dir: Path, figs: Path) -> None:
    """Train loss vs tokens of every sweep run, from its metrics.jsonl."""
    from fastsynth.report.charts import _plt, _save

    curves = {}
    for f in sorted(runs_dir.glob("*/metrics.jsonl")):
        pts = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
        pts = [(p["tokens"], p["loss"]) for p in pts if "loss" in p and isinstance(p["loss"], float)]
        if pts:
            curves[f.parent.name] = pts
    if not curves:
        return
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=110)
    for name, pts in curves.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("train loss (nats/token)")
    ax.set_title("Training curves of the sweep runs")
    ax.legend(fontsize=7, ncol=2)
    doc.figure(_save(fig, figs / "training_curves.png"),
               "Train loss vs tokens per sweep run (model LAYERSxHIDDEN - token budget)")


def _fitted_text(fitted: Any) -> str:
    if not isinstance(fitted, dict):
        return "constants fitted on this run: none (the train stage did not run)."
    return ("constants fitted on this run: " + ", ".join(f"{k} = {fitted[k]:.4g}" for k in
            ("E", "A", "B", "alpha", "beta")) + f" (R^2 {fitted['r2']:.3f}); the plan page predicts each phase's loss with them "
            "beside the published constants' plan.")


def _plan(doc: Document, root: Path, stages: dict) -> None:
    st = stages.get("plan", {})
    if st.get("state") != "done":
        return
    info = st["phases"]["plan"]["global"]["info"]
    doc.h("Budget plan (scenario seed-5m)")
    doc.table(["item", "GPU-hours", "dollars"],
              [[i["name"], "-" if i["gpu_hours"] is None else f"{i['gpu_hours']:,.0f}", f"${i['usd']:,.0f}"]
               for i in info["items"]])
    doc.p(f"Total ${info['total_usd']:,.0f} of ${info['budget_usd']:,.0f} ("
          f"{'fits' if info['fits'] else 'does NOT fit'}), published constants {info['constants']}; "
          + _fitted_text(info.get("fitted_constants")) + f" Full plan: {info['files']['html']}.")
    fig = root / "plan" / "cost_breakdown.png"
    if fig.exists():
        doc.figure(fig, "Cost breakdown of the plan")
