"""Stage ``qa_dedup``: generated pairs deduplicated against each other and the corpus.

One Global step clusters the deduplicated corpus documents followed by the QA texts
("Question: ... Answer: ...") with MinHash + LSH + exact Jaccard, keeping each cluster's
first member: a pair in a cluster with a corpus document is dropped as
``copies_corpus`` (it would train on text the corpus already holds), a pair in a cluster
with an earlier pair as ``near_duplicate_question``. Word 3-grams (not the corpus
dedup's 5-grams) because QA texts are short.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from fastsynth.atomic import write_parquet
from fastsynth.run.config import check, option
from fastsynth.run.records import read_parts, reject_table, write_rejects
from fastsynth.run.rundir import PartResult, part_path, rejects_path
from fastsynth.run.stage import Global, Stage, View


@dataclass(frozen=True)
class QADedupConfig:
    threshold: float = option(0.7, "Jaccard threshold in (0, 1]")
    ngram: int = option(3, "shingle size in words")
    num_perm: int = option(128, "MinHash permutations")
    seed: int = option(1, "permutation seed")

    def __post_init__(self) -> None:
        check(0 < self.threshold <= 1, "qa_dedup.threshold", f"must be in (0, 1], got {self.threshold}")
        check(self.ngram >= 1, "qa_dedup.ngram", f"must be >= 1, got {self.ngram}")


def dedup_pairs(config: QADedupConfig, view: View) -> PartResult:
    from fastsynth.dedup import dedup

    corpus = read_parts(view.root, view.files("dedup", "out"), ["id", "text"])
    qa = read_parts(view.root, view.files("synth", "out"))
    n_c = corpus.num_rows
    texts = corpus.column("text").to_pylist() + qa.column("text").to_pylist()
    res = dedup(texts, threshold=config.threshold, ngram=config.ngram, num_perm=config.num_perm,
                seed=config.seed) if texts else None
    keep = res.keep[n_c:] if res is not None else np.zeros(0, bool)
    owner = res.cluster_id[n_c:] if res is not None else np.zeros(0, np.int64)
    ids = qa.column("id").to_pylist() if qa.num_rows else []
    all_ids = corpus.column("id").to_pylist() + ids
    rows = [(ids[k], "copies_corpus" if owner[k] < n_c else "near_duplicate_question", f"kept {all_ids[owner[k]]}")
            for k in np.flatnonzero(~keep)]
    by_reason = write_rejects(rejects_path(view.root, "qa_dedup", "cluster"), reject_table(rows))
    kept = qa.filter(pa.array(keep)) if qa.num_rows else qa
    write_parquet(part_path(view.root, "qa_dedup", "out", "00000"), kept)
    return PartResult(n_in=qa.num_rows, n_out=kept.num_rows, n_rejected=len(rows),
                      rejected_by_reason=by_reason, info={"parts": ["00000"], "corpus_documents": n_c})


STAGE = Stage("qa_dedup", QADedupConfig, (Global("out", dedup_pairs, counts=True),),
              needs=("synth", "dedup"), output="out", unit="questions",
              description="generated pairs deduplicated against each other and the corpus")
