"""A response cache: a re-run of the same requests returns stored completions.

Key: SHA-256 of the canonical JSON of (model name, chat, sampling parameters, seed). Only
successful completions are stored (errors are retried on the next run). Unseeded sampled
requests (temperature > 0, seed None) are not cached: they are meant to differ per call.
Storage: one SQLite file ``responses.sqlite`` in the given folder (safe across processes).
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from dataclasses import asdict

from fastsynth.llm.base import Completion, Generator, SamplingParams

SCHEMA_VERSION = 1  # bump when the key or the stored fields change meaning


def cache_key(model: str, chat: list[dict[str, str]], params: SamplingParams,
              seed: int | None) -> str:
    blob = json.dumps({"v": SCHEMA_VERSION, "model": model, "chat": chat,
                       "params": asdict(params), "seed": seed},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CachedGenerator(Generator):
    """Wraps a generator; completions found in the cache are not regenerated.

    ``hits`` and ``misses`` count lookups since creation.
    """

    def __init__(self, inner: Generator, cache_dir: str | os.PathLike):
        self.inner = inner
        self.model_name = inner.model_name
        self.context_length = inner.context_length
        os.makedirs(cache_dir, exist_ok=True)
        self.path = os.path.join(cache_dir, "responses.sqlite")
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("CREATE TABLE IF NOT EXISTS responses "
                         "(key TEXT PRIMARY KEY, completion TEXT NOT NULL)")
        self._db.commit()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def _generate(self, chats: list[list[dict[str, str]]], params: SamplingParams,
                  seeds: list[int | None]) -> list[Completion]:
        cacheable = [params.greedy or s is not None for s in seeds]
        keys = [cache_key(self.model_name, c, params, s if not params.greedy else None)
                for c, s in zip(chats, seeds)]
        out: list[Completion | None] = [None] * len(chats)
        with self._lock:
            for i, k in enumerate(keys):
                if not cacheable[i]:
                    continue
                row = self._db.execute("SELECT completion FROM responses WHERE key=?",
                                       (k,)).fetchone()
                if row is not None:
                    out[i] = Completion(**json.loads(row[0]))
        todo = [i for i, c in enumerate(out) if c is None]
        self.hits += len(chats) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = self.inner._generate([chats[i] for i in todo], params,
                                         [seeds[i] for i in todo])
            with self._lock:
                for i, c in zip(todo, fresh):
                    out[i] = c
                    if c.ok and cacheable[i]:
                        self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?)",
                                         (keys[i], json.dumps(c.to_dict(), ensure_ascii=False)))
                self._db.commit()
        return out  # type: ignore[return-value]

    def close(self) -> None:
        self.inner.close()
        with self._lock:
            self._db.close()
