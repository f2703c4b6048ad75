"""Stage ``mix``: organic documents and synthetic QA texts at a configured share.

``synthetic_share`` is the share of *characters* of the mix that is synthetic (a
tokenizer-free stand-in for tokens: both kinds are English prose and code, so their
characters per token are close). All organic documents are kept; synthetic texts are
repeated whole (at most ``max_repeats`` times each; data-constrained scaling finds ~4
repeats nearly as good as fresh data) until the share is reached, or subsampled
(seeded) when there is more synthetic text than the share asks for — those are the
stage's rejects (``over_share``). Output: ``mix/out/00000.parquet`` with ``id``,
``text``, ``origin`` (organic | synthetic), ``repeat``.
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
class MixConfig:
    synthetic_share: float = option(0.2, "share of the mix's characters that is synthetic, in [0, 1)")
    max_repeats: int = option(4, "most times one synthetic text may appear")
    seed: int = option(0, "seed of the subsample and the shuffle")

    def __post_init__(self) -> None:
        check(0 <= self.synthetic_share < 1, "mix.synthetic_share", f"must be in [0, 1), got {self.synthetic_share}")
        check(self.max_repeats >= 1, "mix.max_repeats", f"must be >= 1, got {self.max_repeats}")


def mix(config: MixConfig, view: View) -> PartResult:
    organic = read_parts(view.root, view.files("dedup", "out"), ["id", "text"])
    synth = read_parts(view.root, view.files("qa_dedup", "out"))
    s_ids = synth.column("id").to_pylist() if synth.num_rows else []
    s_txt = synth.column("text").to_pylist() if synth.num_rows else []
    o_chars = sum(len(t) for t in organic.column("text").to_pylist())
    s_len = np.array([len(t) for t in s_txt], dtype=np.int64)
    share = config.synthetic_share
    want = share / (1 - share) * o_chars if share > 0 else 0.0  # synthetic characters asked for
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(s_txt))
    repeats = np.zeros(len(s_txt), dtype=np.int64)
    got = 0
    for _ in range(config.max_repeats):
        for k in order:
            if got >= want:
                break
            repeats[k] += 1
            got += s_len[k]
        if got >= want or not len(s_txt):
            break
    ids, texts, origin, rep = organic.column("id").to_pylist(), organic.column("text").to_pylist(), \
        ["organic"] * organic.num_rows, [0] * organic.num_rows
    for k in range(len(s_txt)):
        for r in range(int(repeats[k])):
            ids.append(s_ids[k] if r == 0 else f"{s_ids[k]}#r{r}")
            texts.append(s_txt[k])
            origin.append("synthetic")
            rep.append(r)
    perm = rng.permutation(len(ids))
    table = pa.table({"id": [ids[i] for i in perm], "text": pa.array([texts[i] for i in perm], pa.large_string()),
                      "origin": [origin[i] for i in perm], "repeat": [rep[i] for i in perm]})
    write_parquet(part_path(view.root, "mix", "out", "00000"), table)
    unused = [(s_ids[k], "over_share", "") for k in np.flatnonzero(repeats == 0)]
    by_reason = write_rejects(rejects_path(view.root, "mix", "out"), reject_table(unused))
    n_in = organic.num_rows + len(s_txt)
    total = o_chars + got
    return PartResult(n_in=n_in, n_out=n_in - len(unused), n_rejected=len(unused),
                      rejected_by_reason=by_reason,
                      info={"parts": ["00000"], "rows": table.num_rows, "organic_chars": int(o_chars),
                            "synthetic_chars": int(got),
                            "synthetic_share": (got / total) if total else 0.0,
                            "synthetic_share_asked": share,
                            "max_repeat_used": int(repeats.max()) if len(repeats) else 0})


STAGE = Stage("mix", MixConfig, (Global("out", mix, counts=True),), needs=("dedup", "qa_dedup"),
              output="out", unit="records (unique texts)",
              description="organic and synthetic texts at the configured share")
