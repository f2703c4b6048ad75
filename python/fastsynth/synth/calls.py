"""Drive a Generator for the pipeline: batching, per-request seeds, retries, token counts.

Every call carries its own seed (derived with :func:`derive_seed` from the run's seed and
what the call is for), so a record's seed reproduces its text on a deterministic backend
and a resumed run asks for exactly what the interrupted one would have.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

Chat = list[dict[str, str]]


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any printable parts (SHA-1, not Python's salted hash)."""
    h = hashlib.sha1("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


@dataclass
class Call:
    """One request to make. ``tag`` is the caller's handle, returned untouched."""

    request: Chat
    seed: int
    max_tokens: int
    temperature: float = 0.0
    tag: Any = None


@dataclass
class Result:
    call: Call
    text: str
    finish_reason: str  # "stop" | "length" | "error"
    error: str | None
    model: str
    attempts: int

    @property
    def ok(self) -> bool:
        return self.finish_reason != "error"


@dataclass
class CallStats:
    """Counts over all calls a driver made (tokens in the generator's tokenizer)."""

    requests: int = 0
    errors: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        d = dict(self.__dict__)
        d["completion_tokens_per_s"] = self.completion_tokens / self.seconds if self.seconds else 0.0
        return d


@dataclass
class Driver:
    """Run :class:`Call` lists through ``generator`` in batches.

    Calls with equal (max_tokens, temperature) are batched together, ``batch_size`` at a
    time. A failed completion (``finish_reason == "error"``) or an exception from the
    backend is retried up to ``retries`` times, with the same seed; then it is returned
    as an error result, never raised.
    """

    generator: Any
    batch_size: int = 8
    retries: int = 2
    top_p: float = 0.95
    stats: CallStats = field(default_factory=CallStats)

    def run(self, calls: list[Call]) -> list[Result]:
        results: list[Result | None] = [None] * len(calls)
        groups: dict[tuple[int, float], list[int]] = {}
        for i, c in enumerate(calls):
            groups.setdefault((c.max_tokens, c.temperature), []).append(i)
        for (max_tokens, temperature), idx in groups.items():
            for s in range(0, len(idx), self.batch_size):
                self._run_batch(calls, idx[s:s + self.batch_size], max_tokens, temperature, results)
        return [r for r in results if r is not None]

    def _run_batch(self, calls: list[Call], idx: list[int], max_tokens: int, temperature: float,
                   results: list[Result | None]) -> None:
        pending = list(idx)
        attempt = 0
        while pending:
            attempt += 1
            t0 = time.perf_counter()
            try:
                comps = self.generator.generate(
                    [calls[i].request for i in pending], max_tokens=max_tokens,
                    temperature=temperature, top_p=self.top_p if temperature > 0 else 1.0,
                    seed=[calls[i].seed for i in pending])
                if len(comps) != len(pending):
                    raise RuntimeError(f"generator returned {len(comps)} completions for {len(pending)} requests")
            except Exception as e:  # a backend failure is data for the summary, not a crash
                comps = [None] * len(pending)
                err = f"{type(e).__name__}: {e}"
            self.stats.seconds += time.perf_counter() - t0
            self.stats.requests += len(pending)
            retry = []
            for i, comp in zip(pending, comps):
                if comp is not None:
                    self.stats.prompt_tokens += int(comp.prompt_tokens or 0)
                    self.stats.completion_tokens += int(comp.completion_tokens or 0)
                failed = comp is None or comp.finish_reason == "error"
                if failed and attempt <= self.retries:
                    retry.append(i)
                    self.stats.retries += 1
                    continue
                if failed:
                    self.stats.errors += 1
                    results[i] = Result(calls[i], "", "error", err if comp is None else (comp.error or "error"),
                                        getattr(comp, "model", "") or _model_name(self.generator), attempt)
                else:
                    results[i] = Result(calls[i], comp.text or "", comp.finish_reason, None,
                                        comp.model or _model_name(self.generator), attempt)
            pending = retry


def _model_name(gen: Any) -> str:
    return str(getattr(gen, "model_name", "") or type(gen).__name__)
