"""Packed batches for the training-loop tests: synthetic documents, packed with the real
``fastsynth.train.pack`` and laid out by ``fastsynth.train.packed_rows`` (the batch contract).

Documents follow a fixed random first-order Markov chain over the vocabulary (so a model can
learn something: the loss falls from ln(V) towards the chain's entropy). The source is
resumable like the real loader: ``state_dict()`` is the next batch index.
"""
from __future__ import annotations

import numpy as np
import torch

from fastsynth.train.packing import pack
from fastsynth.train.rows import packed_rows


def markov_documents(n_docs: int, vocab: int, seed: int, min_len: int = 8,
                     max_len: int = 200, doc_seed: int | None = None) -> list[np.ndarray]:
    """``n_docs`` documents of the chain ``seed`` (drawn with ``doc_seed``, default ``seed``)."""
    # each token has 4 likely successors: entropy ~ ln 4 plus the noise share
    succ = np.random.default_rng(seed).integers(1, vocab, size=(vocab, 4))
    rng = np.random.default_rng([seed, 1 if doc_seed is None else 2, doc_seed or 0])
    docs = []
    for _ in range(n_docs):
        n = int(rng.integers(min_len, max_len))
        toks = np.empty(n, dtype=np.int64)
        toks[0] = rng.integers(1, vocab)
        picks = rng.integers(0, 4, size=n)
        noise = rng.random(n) < 0.1
        rand = rng.integers(1, vocab, size=n)
        for i in range(1, n):
            toks[i] = rand[i] if noise[i] else succ[toks[i - 1], picks[i]]
        docs.append(toks)
    return docs


def packed_batches(docs: list[np.ndarray], rows: int, seq_len: int) -> list[dict]:
    """All of ``docs`` packed (best-fit) into batches of ``rows`` rows (last partial dropped)."""
    lengths = np.array([len(d) for d in docs])
    pieces = pack(lengths, seq_len)
    n_rows = int(pieces["row"].max()) + 1
    out = []
    for start in range(0, n_rows - rows + 1, rows):
        sel = pieces[(pieces["row"] >= start) & (pieces["row"] < start + rows)].copy()
        sel["row"] -= start
        b = packed_rows(sel, rows, seq_len, docs, sel["doc"], sel["start"], pad_id=0)
        out.append({k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                    for k, v in b.items()})
    return out


class ListSource:
    """Batches from a list, cycled forever; ``state_dict()`` = index of the next batch."""

    def __init__(self, batches: list[dict]):
        self.batches, self.next = batches, 0

    def __iter__(self):
        while True:
            b = self.batches[self.next % len(self.batches)]
            self.next += 1
            yield b

    def state_dict(self) -> dict:
        return {"next": self.next}

    def load_state_dict(self, state: dict) -> None:
        self.next = int(state["next"])


def make_data(vocab: int = 512, seq_len: int = 64, rows: int = 4, n_docs: int = 300,
              seed: int = 0) -> tuple[ListSource, list[dict]]:
    """(training source, held-out batches) from one chain, different documents."""
    docs = markov_documents(n_docs, vocab, seed)
    held = markov_documents(40, vocab, seed, max_len=120, doc_seed=seed + 1000)  # same chain
    return ListSource(packed_batches(docs, rows, seq_len)), packed_batches(held, rows, seq_len)


def markov_shards(root, n_docs: int = 250, seed: int = 3):
    """A real shard set (``fastsynth.train.tokenize`` with a 320-token BPE) of Markov 'words'
    under ``root``; returns its folder (``root / "set"``)."""
    from pathlib import Path

    from fastsynth.corpus import write
    from fastsynth.train.tokenize import tokenize
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    words = [f"w{i}" for i in range(300)]
    docs = markov_documents(n_docs, 300, seed=seed, max_len=120)
    write([{"id": str(i), "text": " ".join(words[t] for t in d)} for i, d in enumerate(docs)],
          root / "docs.jsonl")
    tokenize(str(root / "docs.jsonl"), root / "set", tokenizer="bpe:320", show_progress=False)
    return root / "set"
