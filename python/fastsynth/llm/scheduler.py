"""Continuous batching: one worker thread owns a :class:`~fastsynth.model.generation.DecodeBatch`
and runs decode steps while requests join and leave it.

A :class:`Job` (token ids + sampling settings) is :meth:`Scheduler.submit`-ted from any thread;
between two decode steps the worker takes waiting jobs (up to ``max_batch`` rows in the batch),
prefills them together (a lone one at batch 1) and adds them to the batch, so a request that
arrives while others decode starts at the next step instead of waiting for them to finish.
As soon as a step's tokens are sampled (before its forward pass), each job's ``on_event``
callback gets the text that became final (see ``Row.take_delta``) and, at the end, the
:class:`~fastsynth.model.generation.Generated` result. A job that raises while joining (a bad
argument, out of memory) fails alone; a fault inside a decode step fails the unfinished rows of
that step and the worker starts a fresh batch. :meth:`Job.cancel` (a client that disconnected)
removes the row at the next step, or the job before it joins.

The worker sees token ids only: tokenization happens in the caller's threads.
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

from fastsynth.model.generation import DecodeBatch, Generated, Row, Sampling

# on_event(delta_text, result, error): result set once, at the end; error set instead of it
# when the job failed.
EventCallback = Callable[[str, "Generated | None", "str | None"], None]


@dataclass(eq=False)
class Job:
    """One sequence to generate. ``prompt``: token ids; ``max_new_tokens`` counted with the
    end-of-turn token; ``on_event`` is called from the worker thread."""

    prompt: Sequence[int]
    max_new_tokens: int
    sampling: Sampling
    stop: tuple[str, ...]
    seed: int | None
    on_event: EventCallback
    row: Row | None = field(default=None, repr=False)
    cancelled: bool = False

    def cancel(self) -> None:
        """Stop generating (thread-safe); no further events are sent."""
        self.cancelled = True
        if self.row is not None:
            self.row.cancel()


class Scheduler:
    """The worker thread (started at construction) and its queue of waiting jobs.

    ``max_batch``: most rows decoding together. ``stats`` counts joins, steps, cancellations
    and failures (for /health and tests).
    """

    def __init__(self, model, tokenizer, *, max_batch: int = 16):
        self.batch = DecodeBatch(model, tokenizer)
        self.max_batch = max_batch
        self._waiting: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._stop = False
        self.stats = collections.Counter()
        self._thread = threading.Thread(target=self._run, name="fastsynth-decode", daemon=True)
        self._thread.start()

    @property
    def decoding(self) -> int:
        return len(self.batch)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def submit(self, job: Job) -> None:
        with self._cond:
            self._waiting.append(job)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(30)

    def _take(self) -> list[Job]:
        """Waiting jobs that fit in the batch now (blocks while there is nothing to do)."""
        with self._cond:
            while not self._stop and not self._waiting and not len(self.batch):
                self._cond.wait()
            out = []
            while self._waiting and len(self.batch) + len(out) < self.max_batch:
                job = self._waiting.popleft()
                if job.cancelled:
                    self.stats["cancelled"] += 1
                else:
                    out.append(job)
            return out

    def _join(self, jobs: list[Job]) -> None:
        """Prefill ``jobs`` together and add them to the batch (prefix shared, as generate()
        does); a job with a bad argument fails alone, and if the joint prefill fails, each job
        is tried alone so one cannot fail the others."""
        running = len(self.batch) > 0
        rows, ok = [], []
        for job in jobs:
            if job.cancelled:
                self.stats["cancelled"] += 1
                continue
            try:
                rows.append(self.batch.new_row(job, job.prompt, max_new_tokens=job.max_new_tokens,
                                               sampling=job.sampling, stop=job.stop,
                                               seed=job.seed))
                ok.append(job)
            except Exception as e:
                self.stats["failed"] += 1
                job.on_event("", None, f"{type(e).__name__}: {e}")
        if not ok:
            return
        try:
            self.batch.join(rows, [j.prompt for j in ok])
            pairs = list(zip(ok, rows))
        except Exception as e:
            if len(ok) == 1:
                pairs = []
                self.stats["failed"] += 1
                ok[0].on_event("", None, f"prefill failed: {type(e).__name__}: {e}")
            else:
                for job in ok:  # isolate the one that fails
                    self._join([job])
                return
        for job, row in pairs:
            job.row = row
            self.stats["joined"] += 1
            self.stats["joined_running"] += running   # joined a batch mid-decode
            if job.cancelled:  # cancelled while it was prefilled
                row.cancel()

    def _run(self) -> None:
        while not self._stop:
            self._join(self._take())
            if not len(self.batch):
                continue
            rows = list(self.batch.rows)
            self.stats["cancelled"] += sum(r.cancelled for r in rows)
            delivered: set[int] = set()

            def deliver(stepped: list[Row]) -> None:
                """New text (and results) out as soon as the tokens are sampled."""
                for r in stepped:
                    delivered.add(id(r))
                    if r.cancelled:  # cancelled during this step: no more events
                        continue
                    delta = r.take_delta()
                    if delta or r.result is not None:
                        r.key.on_event(delta, r.result, None)

            try:
                self.batch.step(on_tokens=deliver)
                self.stats["steps"] += 1
            except Exception as e:  # a fault in the model: fail this step's rows, start afresh
                self.batch = DecodeBatch(self.batch.model, self.batch.tokenizer)
                for r in rows:
                    if r.cancelled or (id(r) in delivered and r.result is not None):
                        continue   # finished (and told so) before the fault
                    self.stats["failed"] += 1
                    r.key.on_event("", None, f"generation failed: {type(e).__name__}: {e}")
