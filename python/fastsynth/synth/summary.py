"""The run summary: yields per level, rejections by reason, tokens, diversity.

Diversity (see :mod:`fastsynth.quality.diversity`) is reported for all accepted
questions, per level, and for Level-1 vs Level-2 questions *from the same documents*
(SynthLLM's comparison). Concepts "used" by a question are the corpus concepts its
normalised text mentions (word n-grams up to 4 words matched against the merged concept
vocabulary), the same rule for every level so the levels are comparable.
"""
from __future__ import annotations

import json
import math
import time
from collections import Counter
from typing import Any

import pyarrow as pa

from fastsynth.quality.diversity import diversity_report, embed, load_embedder
from fastsynth.synth.concepts import merge_names, normalize
from fastsynth.synth.documents import Doc
from fastsynth.synth.level2 import DocConcepts
from fastsynth.synth.provenance import QA_SCHEMA, REJECT_SCHEMA
from fastsynth.atomic import atomic_write_bytes
from fastsynth.synth.rundir import RunDir

CONCEPT_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("topics", pa.list_(pa.struct([("topic", pa.string()), ("concepts", pa.list_(pa.string()))]))),
    ("display", pa.map_(pa.string(), pa.string())),
    ("source", pa.string()),
])


def concepts_table(concepts: list[DocConcepts]) -> pa.Table:
    rows = [{"doc_id": dc.doc_id, "topics": [{"topic": t, "concepts": cs} for t, cs in dc.topics],
             "display": list(dc.display.items()), "source": dc.source} for dc in concepts]
    return pa.Table.from_pylist(rows, schema=CONCEPT_SCHEMA)


def read_concepts(table: pa.Table) -> list[DocConcepts]:
    return [DocConcepts(r["doc_id"], [(t["topic"], list(t["concepts"])) for t in r["topics"]], dict(r["display"]),
                        r["source"] or "model") for r in table.to_pylist()]


def mentioned(question: str, vocab: set[str], max_words: int = 4) -> list[str]:
    """Vocabulary concepts whose normalised form occurs as a word n-gram of the question."""
    w = normalize(question).split()
    found = {" ".join(w[i:i + k]) for k in range(1, max_words + 1) for i in range(len(w) - k + 1)}
    return sorted(found & vocab)


def _diversity(rows: list[dict], vocab: set[str], emb: Any) -> dict[str, float]:
    texts = [r["question"] for r in rows]
    rep = diversity_report(texts, [r["_mentions"] for r in rows], vocab, embeddings=False)
    if emb is not None and len(rows) >= 2:
        from fastsynth.quality.diversity import mean_pairwise_similarity
        rep["mean_pairwise_similarity"] = mean_pairwise_similarity(emb[[r["_row"] for r in rows]])
    return rep


def summarize(rd: RunDir, docs: list[Doc], skipped: list[tuple[str, str]], quota: dict[int, int], cfg: Any,
              elapsed: float, filter_kind: str) -> dict[str, Any]:
    qa_rows = rd.read("qa", QA_SCHEMA).to_pylist()
    rej_rows = rd.read("rejects", REJECT_SCHEMA).to_pylist()
    concepts = read_concepts(rd.read("concepts", CONCEPT_SCHEMA))
    cmap = merge_names([c for dc in concepts for c in dc.concepts])
    vocab = set(cmap.values())
    for i, r in enumerate(qa_rows):
        r["_row"] = i
        r["_mentions"] = [cmap.get(c, c) for c in mentioned(r["question"], set(cmap))]
    emb = None
    emb_note = "off"
    if cfg.diversity_embeddings and len(qa_rows) >= 2:
        try:
            emb = embed([r["question"] for r in qa_rows], load_embedder())
            emb_note = "all-MiniLM-L6-v2"
        except ImportError as e:  # DependencyError derives from ImportError
            emb_note = f"unavailable: {e}"
    by_level = {lv: [r for r in qa_rows if r["level"] == lv] for lv in (1, 2, 3)}
    diversity: dict[str, Any] = {"embeddings": emb_note, "vocabulary_concepts": len(vocab)}
    diversity["all"] = _diversity(qa_rows, vocab, emb)
    for lv, rows in by_level.items():
        diversity[f"level{lv}"] = _diversity(rows, vocab, emb)
    both = ({d for r in by_level[1] for d in r["source_ids"]} & {d for r in by_level[2] for d in r["source_ids"]})
    diversity["same_docs"] = {
        "documents": len(both),
        "level1": _diversity([r for r in by_level[1] if set(r["source_ids"]) & both], vocab, emb),
        "level2": _diversity([r for r in by_level[2] if set(r["source_ids"]) & both], vocab, emb),
    }
    rejections: dict[str, dict[str, int]] = {}
    for r in rej_rows:
        key = f"level{r['level']}" if r["level"] else "input"
        rejections.setdefault(key, Counter())[f"{r['stage']}:{r['reason']}"] += 1
    calls: Counter[str] = Counter()
    gen_seconds = 0.0
    for info in rd.manifest["parts"].values():
        for k, v in info.get("calls", {}).items():
            calls[k] += v
        gen_seconds += info.get("seconds", 0.0)
    summary = {
        "documents": {"units": len(docs), "skipped": dict(Counter(r for _, r in skipped)),
                      "concept_source": dict(Counter(dc.source for dc in concepts))},
        "requested_questions": {f"level{lv}": quota[lv] for lv in (1, 2, 3)},
        "yield": {f"level{lv}": len(rows) for lv, rows in by_level.items()},
        "total": len(qa_rows),
        "evolved": sum(1 for r in qa_rows if r["kind"].startswith("evolved:")),
        "rejections": {k: dict(sorted(v.items())) for k, v in sorted(rejections.items())},
        "near_duplicate_filter": filter_kind,
        "tokens": {"prompt": int(calls["prompt_tokens"]), "completion": int(calls["completion_tokens"]),
                   "requests": int(calls["requests"]), "generator_errors": int(calls["errors"]),
                   "generation_seconds": calls["seconds"],
                   "completion_tokens_per_s": calls["completion_tokens"] / calls["seconds"] if calls["seconds"] else 0.0},
        "part_seconds": gen_seconds,
        "elapsed_s_this_run": elapsed,
        "diversity": diversity,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if not docs:
        summary["message"] = ("empty corpus: no usable documents, no records"
                              + (f" ({len(skipped)} skipped, see rejects/)" if skipped else ""))
    summary = _finite(summary)
    summary_document(summary).write(rd.root, "summary")
    atomic_write_bytes(rd.root / "summary.json", json.dumps(summary, indent=1).encode())
    return summary


def summary_document(s: dict[str, Any]) -> Any:
    """The summary as a report :class:`fastsynth.report.Document` (summary.md/.html)."""
    from fastsynth.report import Document

    doc = Document("fastsynth synth summary")
    if "message" in s:
        doc.p(s["message"])
    doc.h("Yield")
    doc.table(["level", "requested", "accepted"],
              [[lv, s["requested_questions"][f"level{lv}"], s["yield"][f"level{lv}"]] for lv in (1, 2, 3)]
              + [["all", sum(s["requested_questions"].values()), s["total"]]])
    doc.p(f"{s['evolved']} evolved; near-duplicate filter: {s['near_duplicate_filter']}; "
          f"{s['documents']['units']} document units.")
    doc.h("Rejections")
    doc.table(["where", "stage:reason", "count"],
              [[k, r, n] for k, reasons in s["rejections"].items() for r, n in reasons.items()])
    t = s["tokens"]
    doc.h("Generation")
    doc.p(f"{t['requests']} requests, {t['prompt']} prompt and {t['completion']} completion tokens, "
          f"{t['completion_tokens_per_s']:.1f} completion tokens/s, {t['generator_errors']} generator errors.")
    doc.h("Diversity")
    d = s["diversity"]
    rows = []
    for key in ("all", "level1", "level2", "level3"):
        v = d[key]
        rows.append([key, f"{v['n']:.0f}"] + ["n/a" if v.get(m) is None else f"{v[m]:.3f}" for m in
                                         ("coverage", "entropy_bits", "mean_pairwise_similarity",
                                          "set_gzip_ratio")])
    doc.table(["questions", "n", "concept coverage", "entropy (bits)", "mean pairwise similarity",
               "set gzip ratio (compressed/original)"], rows)
    doc.p(f"Embeddings: {d['embeddings']}; vocabulary of {d['vocabulary_concepts']} concepts.")
    return doc


def _finite(o: Any) -> Any:
    """NaN/inf -> None, so summary.json is standard JSON (undefined measures are null)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o
