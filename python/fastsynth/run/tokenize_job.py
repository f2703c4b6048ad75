"""``fastsynth tokenize --executor ray``: documents encoded as parts on an executor, the
shard set written by the driver in input order.

The tokenizer is loaded (or, for ``bpe:N``, trained) on the driver exactly as
:func:`fastsynth.train.tokenize.tokenize` does; the input is read into parts of
``batch_size`` documents in a work directory beside the shard set
(:mod:`fastsynth.run.command_parts`); each part is encoded by a worker
(:func:`encode_part`, the tokenizer rebuilt from its JSON once per process) into
``tokenize/out/<part>.parquet`` (``id``, ``tokens``: one list of token ids per document,
separator included, empty for an empty document); the driver appends the parts, in part
order, to one :class:`~fastsynth.train.shards.ShardWriter`. Shard boundaries depend only
on the sequence of documents, so the shard set is the one the local path writes
(docs/scale.md, "Stage commands on Ray").
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fastsynth.atomic import atomic_write_text, write_parquet
from fastsynth.errors import ConfigError
from fastsynth.run.rundir import PartResult
from fastsynth.run.stage import Map, Part, Stage, one_to_one


@dataclass(frozen=True)
class EncodeConfig:
    """The tokenizer as a file (its JSON), its fingerprint (what a worker caches it by: the
    same path may hold another tokenizer in a later command) and its separator token."""

    tokenizer_json: str
    fingerprint: str
    separator: str


_TOKENIZERS: dict[tuple[str, str], Any] = {}


def _tokenizer(config: EncodeConfig) -> Any:
    from fastsynth.train.vocab import tokenizer_from_json

    key = (config.fingerprint, config.separator)
    if key not in _TOKENIZERS:
        js = Path(config.tokenizer_json).read_text(encoding="utf-8")
        tok = tokenizer_from_json(js, config.separator, config.tokenizer_json)
        if tok.fingerprint != config.fingerprint:
            raise ConfigError(f"{config.tokenizer_json}: not the driver's tokenizer (fingerprint "
                              f"{tok.fingerprint[:12]}, expected {config.fingerprint[:12]})")
        _TOKENIZERS[key] = tok
    return _TOKENIZERS[key]


def encode_part(config: EncodeConfig, part: Part) -> PartResult:
    """Phase ``out``: every document of the part encoded (``encode_documents``)."""
    from fastsynth.train.tokenize import encode_documents

    (src,) = part.input_paths()
    t = pq.read_table(src, columns=["id", "text"])
    flat, lengths = encode_documents(_tokenizer(config), t.column("text").to_pylist())
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.uint32()))
    write_parquet(part.out, pa.table({"id": t.column("id"), "tokens": tokens}))
    return PartResult(info={"documents": t.num_rows, "tokens": int(flat.size)})


STAGE = Stage("tokenize", EncodeConfig, (Map("out", encode_part, one_to_one("ingest")),), needs=("ingest",),
              description="documents encoded into token ids")


def run_tokenize_parts(source: Any, out: str | os.PathLike, executor: Any, *, tokenizer: Any = None,
                       shard_tokens: int, batch_size: int, text_field: str = "text", on_error: str = "raise",
                       rejects: str | None = None, overwrite: bool = False) -> Any:
    """:func:`fastsynth.train.tokenize.tokenize` with the encoding done as parts on
    ``executor``; returns the same :class:`~fastsynth.train.tokenize.TokenizeSummary`."""
    from fastsynth.run import command_parts as cp
    from fastsynth.train.tokenize import ShardSetBuilder

    build = ShardSetBuilder(source, out, tokenizer=tokenizer, shard_tokens=shard_tokens,
                            batch_size=batch_size, text_field=text_field, on_error=on_error,
                            overwrite=overwrite)
    tok = build.tok
    work = cp.work_dir_for(out, out_is_dir=False)
    read_cfg = cp.ReadConfig(source=str(source), text_field=text_field, on_error=on_error,
                             part_docs=batch_size, rejects=rejects)
    identity = {"command": "tokenize", "read": {**read_cfg.__dict__, **cp.source_identity(str(source))},
                "tokenizer_fingerprint": tok.fingerprint, "separator": tok.separator}
    work.mkdir(parents=True, exist_ok=True)
    tok_file = work.parent / f"{work.name}.tokenizer.json"
    atomic_write_text(tok_file, tok.json)
    try:
        rd = cp.run_in_work_dir(work, identity, [(cp.READ, read_cfg),
                                                 (STAGE, EncodeConfig(str(tok_file), tok.fingerprint, tok.separator))], executor)
        for path in cp.part_files(rd, "tokenize", "out"):
            t = pq.read_table(path)
            col = t.column("tokens").combine_chunks()
            flat = col.values.to_numpy(zero_copy_only=False)
            lengths = np.diff(col.offsets.to_numpy(zero_copy_only=False)).astype(np.int64)
            build.add(t.column("id").to_pylist(), flat, lengths)
    except BaseException:
        build.abort()
        raise
    stats = rd.parts("ingest", "out")["global"]["info"]["stats"]
    summary = build.finish(stats.get("read", 0), stats.get("rejected", 0),
                           stats.get("rejected_by_reason", {}))
    cp.remove_work_dir(work)
    tok_file.unlink(missing_ok=True)
    return summary
