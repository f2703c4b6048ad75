"""A response cache: a re-run of the same requests returns stored completions.

Key: SHA-256 of the canonical JSON of (model name, chat, sampling parameters, seed). Only
successful completions are stored (errors are retried on the next run). Unseeded sampled
requests (temperature > 0, seed None) are not cached: they are meant to differ per call.
Storage: one SQLite file ``responses.sqlite`` in the given folder (safe across processes).
A file that is not a readable SQLite database is reported (``InputError`` naming it) when the
cache is opened; it only holds cached responses, so deleting it is the recovery. A write that
fails mid-run (disk full, the file damaged meanwhile) is reported once on stderr and the run
goes on uncached: completions are never lost to the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import threading
from dataclasses import asdict

from fastsynth.errors import InputError
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
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.execute("CREATE TABLE IF NOT EXISTS responses "
                             "(key TEXT PRIMARY KEY, completion TEXT NOT NULL)")
            self._db.execute("SELECT count(*) FROM responses").fetchone()
            self._db.commit()
        except sqlite3.DatabaseError as e:
            raise self._damaged(e) from None
        self._writable = True
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def _damaged(self, e: Exception) -> InputError:
        return InputError(f"not a usable response cache ({e}); it holds only cached "
                          f"responses: delete it (or pass another --cache-dir) to start an "
                          f"empty one", source=self.path)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def _lookup(self, key: str) -> Completion | None:
        try:
            row = self._db.execute("SELECT completion FROM responses WHERE key=?",
                                   (key,)).fetchone()
            return Completion(**json.loads(row[0])) if row is not None else None
        except sqlite3.DatabaseError as e:
            raise self._damaged(e) from None
        except (ValueError, TypeError):  # a damaged row: regenerate it
            return None

    def _store(self, rows: list[tuple[str, Completion]]) -> None:
        if not self._writable or not rows:
            return
        try:
            self._db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?)",
                                 [(k, json.dumps(c.to_dict(), ensure_ascii=False))
                                  for k, c in rows])
            self._db.commit()
        except (sqlite3.Error, UnicodeEncodeError) as e:
            self._writable = False
            print(f"fastsynth: warning: cannot write to the response cache {self.path} ({e}); "
                  "going on without storing responses", file=sys.stderr)

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
                out[i] = self._lookup(k)
        todo = [i for i, c in enumerate(out) if c is None]
        self.hits += len(chats) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = self.inner._generate([chats[i] for i in todo], params,
                                         [seeds[i] for i in todo])
            for i, c in zip(todo, fresh):
                out[i] = c
            with self._lock:
                self._store([(keys[i], c) for i, c in zip(todo, fresh)
                             if c.ok and cacheable[i]])
        return out  # type: ignore[return-value]

    def close(self) -> None:
        self.inner.close()
        with self._lock:
            self._db.close()
