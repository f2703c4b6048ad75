"""Batched, KV-cached text generation for :class:`fastsynth.model.Llama`.

Two entry points share one decode loop (:class:`DecodeBatch`):

- :func:`generate` continues a fixed list of prompts (offline batches). The leading tokens all
  prompts share (a chat template's system prompt, a common instruction) are computed once, at
  batch 1, and copied into the first cache slots of every row (prefix sharing, as vLLM's prefix
  caching does; ``share_prefix=False`` turns it off). The rest of each prompt is
  **left-padded** to the longest one after that prefix.
- :class:`DecodeBatch` is the step-level engine behind continuous batching (``fastsynth
  serve``): sequences :meth:`~DecodeBatch.join` it between two steps (their prompts are
  prefilled together, the same way :func:`generate` prefills its batch; a lone one exactly as
  a batch-1 request), their cache rows are copied in, and each leaves the batch when it
  finishes or is cancelled. :func:`generate` is a join into an empty batch plus steps.

Cache layout (both): one :class:`~fastsynth.model.llama.KVCache` of ``(B, capacity)`` slots per
layer whose first ``length`` slots are filled, the same for every row. A row's slots that hold
nothing of its own (left padding; the slots before a late joiner's prompt) are zero and masked
out of attention by ``key_mask`` ``(B, capacity)`` bool (True = attend; slots at or past
``length`` are True, ready for the next token). Every sequence has its own RoPE positions
starting at 0, so neither padding nor a shift of its slots changes its keys. When rows join or
the cache fills up, it is copied into a new one and the leading slots no row needs are dropped.
Finished sequences leave the batch (their cache rows are dropped), so the remaining ones run on
a smaller batch.

Sampling: greedy when ``temperature == 0``; otherwise temperature, then top-k, then top-p
(nucleus) filtering, then one draw from each row's own ``torch.Generator``. A row's generator is
seeded with its request's seed, so the same (prompt, seed) draws the same random numbers
whatever else is in the batch. (Its logits can still differ in the last float bits between
batch shapes, which in rare near-ties changes a token.)

Token counts: ``Generated.tokens`` excludes the end-of-turn token that ended a sequence, but
``Generated.completion_tokens`` counts it (it was generated: one decode step), as vLLM and
OpenAI count it; see ``docs/serving.md``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

import torch

from fastsynth.errors import ConfigError
from fastsynth.model.llama import KVCache, Llama
from fastsynth.model.tokenizer import Tokenizer

# Seeds are torch.Generator seeds: unsigned 64-bit integers.
SEED_RANGE = (0, 2 ** 64)


@dataclass
class Generated:
    """One finished sequence: new token ids (end-of-turn token excluded), its text (stop string
    cut), and why it ended: ``"stop"`` (end-of-turn token or stop string) or ``"length"``.
    ``stop_token`` is the end-of-turn token id that ended it, if one did."""

    tokens: list[int]
    text: str
    finish_reason: str
    stop_token: int | None = None

    @property
    def completion_tokens(self) -> int:
        """Tokens generated, the end-of-turn token included (vLLM's and OpenAI's count)."""
        return len(self.tokens) + (self.stop_token is not None)


@dataclass(frozen=True)
class Sampling:
    """Per-sequence sampling: ``temperature`` 0 = greedy; ``top_k`` None/0 = off; ``top_p`` in
    [0, 1] (0 keeps only the most likely token, the limit of top_p -> 0+)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int | None = None


def sample_next(logits: torch.Tensor, *, temperature: float, top_k: int | None, top_p: float,
                generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Next token per row. ``logits`` ``(B, vocab)``; returns int64 ``(B,)``."""
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    scores = logits.float() / temperature
    if top_k:
        k = min(top_k, scores.shape[-1])
        kth = torch.topk(scores, k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        cum = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the tokens ranked above it already reach top_p; the top one always
        # stays (for top_p == 0 it is the only one)
        drop = (cum - sorted_scores.softmax(dim=-1)) >= top_p
        drop[:, 0] = False
        sorted_scores = sorted_scores.masked_fill(drop, float("-inf"))
        scores = torch.empty_like(scores).scatter_(-1, order, sorted_scores)
    probs = scores.softmax(dim=-1)
    return torch.cat([torch.multinomial(probs[i], 1, generator=g)
                      for i, g in enumerate(generators)])


# Shorter common prefixes are not worth a separate forward pass.
MIN_SHARED_PREFIX = 8
# Cache slots added when a continuous batch's cache fills up (a copy per growth: 64 slots keep
# copies rare next to the decode steps they enable).
GROW_SLOTS = 64


def shared_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """Leading tokens common to all prompts, leaving every prompt at least one token of its own
    (the step after the prefix must produce each row's next-token logits); 0 for a single prompt
    or a common prefix shorter than ``MIN_SHARED_PREFIX``."""
    if len(prompts) < 2:
        return 0
    first, limit = prompts[0], min(len(p) for p in prompts) - 1
    k = 0
    while k < limit and all(p[k] == first[k] for p in prompts):
        k += 1
    return k if k >= MIN_SHARED_PREFIX else 0


def _find_stop(text: str, stop: Sequence[str]) -> int:
    """Index of the earliest stop string in ``text`` or -1."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else -1


def _held_back(text: str, stop: Sequence[str]) -> int:
    """Characters at the end of ``text`` that may not be streamed yet: the longest suffix that
    begins a stop string (it may still become one and be cut), and an incomplete UTF-8 sequence
    (the byte-level decoder shows it as U+FFFD until its last byte arrives)."""
    hold = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:n]):
                hold = n
                break
    partial = len(text) - len(text.rstrip("\ufffd"))
    return max(hold, partial)


def check_seed(seed: object) -> int | None:
    """``seed`` if it is None or an int in [0, 2**64); else ``ConfigError``."""
    if seed is None:
        return None
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed must be an integer or null, got {type(seed).__name__}")
    if not SEED_RANGE[0] <= seed < SEED_RANGE[1]:
        raise ConfigError(f"seed must be in [0, 2**64), got {seed}")
    return seed


def _prefill(model: Llama, prompts: Sequence[Sequence[int]], *, free: int,
             share_prefix: bool = True
             ) -> tuple[KVCache, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``prompts`` (token ids) through ``model`` into a new cache with ``free`` empty slots
    after them. Returns (cache, key mask ``(B, capacity)`` bool, next-token logits
    ``(B, vocab)``, next positions ``(B,)`` int64 = prompt lengths).

    Cache slots: [shared prefix | left padding | rest of each prompt | free]. For one prompt
    this is a plain batch-1 forward (no prefix, no padding)."""
    dev, dtype = model.embed.weight.device, model.embed.weight.dtype
    n = len(prompts)
    lens = torch.tensor([len(p) for p in prompts])
    shared = shared_prefix_length(prompts) if share_prefix else 0
    width = int(lens.max()) - shared                         # per-row part, padded
    capacity = shared + width + free
    pad = width - (lens - shared)
    ids = torch.zeros(n, width, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, pad[i]:] = torch.as_tensor(list(p[shared:]), dtype=torch.long)
    slot = torch.arange(capacity)
    key_mask = (slot[None, :] < shared) | (slot[None, :] >= shared + pad[:, None])
    positions = (shared + slot[None, :width] - pad[:, None]).clamp(min=shared)

    cache = KVCache(model.config, n, capacity, dtype=dtype, device=dev)
    if shared:
        # the common prefix once, at batch 1; every row's cache starts with a copy of it
        one = KVCache(model.config, 1, shared, dtype=dtype, device=dev)
        model(torch.as_tensor(list(prompts[0][:shared]), dtype=torch.long, device=dev)[None],
              cache=one, last_only=True)
        for dst, src in zip(cache.k + cache.v, one.k + one.v):
            dst[:, :shared] = src
        cache.length = shared
    logits = model(ids.to(dev), positions.to(dev), cache=cache,
                   key_mask=key_mask[:, :shared + width].to(dev), last_only=True)[:, -1]
    return cache, key_mask.to(dev), logits, lens.clone()


class Row:
    """One sequence of a :class:`DecodeBatch`.

    ``tokens``: new token ids so far (end-of-turn token excluded). ``result``: the
    :class:`Generated` once it finished. ``key``: the caller's handle. :meth:`cancel` may be
    called from any thread; the row leaves the batch at the start of the next step.
    """

    def __init__(self, key: Hashable, prompt_len: int, limit: int, sampling: Sampling,
                 stop: tuple[str, ...], generator: torch.Generator):
        self.key, self.prompt_len, self.limit = key, prompt_len, limit
        self.sampling, self.stop, self.generator = sampling, stop, generator
        self.tokens: list[int] = []
        self.text = ""
        self.result: Generated | None = None
        self.cancelled = False
        self._streamed = 0

    def cancel(self) -> None:
        self.cancelled = True

    @property
    def finished(self) -> bool:
        return self.result is not None

    def take_delta(self) -> str:
        """Text not handed out before that can no longer change (safe to stream)."""
        if self.result is not None:
            end = len(self.result.text)
            text = self.result.text
        else:
            text = self.text
            end = len(text) - _held_back(text, self.stop)
        if end <= self._streamed:
            return ""
        delta, self._streamed = text[self._streamed:end], end
        return delta

    def _push(self, tok: int, tokenizer: Tokenizer, stop_set: set[int]) -> None:
        """Record the sampled token; sets ``result`` when the sequence ends with it."""
        if tok in stop_set:
            self.result = Generated(self.tokens, self.text, "stop", stop_token=tok)
            return
        self.tokens.append(tok)
        self.text = tokenizer.decode(self.tokens)
        if self.stop:
            cut = _find_stop(self.text, self.stop)
            if cut >= 0:
                self.result = Generated(self.tokens, self.text[:cut], "stop")
                return
        if len(self.tokens) >= self.limit:
            self.result = Generated(self.tokens, self.text, "length")


class DecodeBatch:
    """Sequences decoding together over one KV cache; see the module docstring for the layout.

    Not thread-safe: one thread owns it and calls :meth:`add` and :meth:`step` (only
    :meth:`Row.cancel` may come from elsewhere). ``stop_ids``: token ids that end a sequence
    (default: the tokenizer's end-of-turn ids).
    """

    def __init__(self, model: Llama, tokenizer: Tokenizer, *,
                 stop_ids: Sequence[int] | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.stop_set = set(tokenizer.stop_ids if stop_ids is None else stop_ids)
        self.device = model.embed.weight.device
        self.dtype = model.embed.weight.dtype
        self.rows: list[Row] = []
        self.cache: KVCache | None = None
        self.key_mask: torch.Tensor | None = None     # (B, capacity) bool, on device
        self.next_pos = torch.zeros(0, dtype=torch.long)  # (B,) position of each row's next token
        self.logits: torch.Tensor | None = None       # (B, vocab): next-token logits per row

    def __len__(self) -> int:
        return len(self.rows)

    # -- joining ---------------------------------------------------------------------------
    def new_row(self, key: Hashable, prompt: Sequence[int], *, max_new_tokens: int,
                sampling: Sampling = Sampling(), stop: Sequence[str] = (),
                seed: int | None = None) -> Row:
        """A :class:`Row` for ``prompt`` (checked; not yet in the batch)."""
        if not prompt:
            raise ConfigError("every prompt needs at least one token")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens!r}")
        ctx = self.model.config.max_seq_len
        if len(prompt) + max_new_tokens > ctx:
            raise ConfigError(f"{len(prompt)} prompt tokens + max_new_tokens {max_new_tokens} "
                              f"exceeds the model's context of {ctx}")
        seed = check_seed(seed)
        gen = torch.Generator().manual_seed(seed if seed is not None else random.getrandbits(63))
        return Row(key, len(prompt), max_new_tokens, sampling, tuple(stop), gen)

    def add(self, key: Hashable, prompt: Sequence[int], *, max_new_tokens: int,
            sampling: Sampling = Sampling(), stop: Sequence[str] = (),
            seed: int | None = None) -> Row:
        """Prefill ``prompt`` (token ids) at batch 1 and join the batch; its first token is
        sampled at the next :meth:`step`. Raises ``ConfigError`` for a bad argument (the batch
        is unchanged). A lone prompt's prefill is exactly the one :func:`generate` runs for it
        alone."""
        row = self.new_row(key, prompt, max_new_tokens=max_new_tokens, sampling=sampling,
                           stop=stop, seed=seed)
        self.join([row], [prompt])
        return row

    @torch.inference_mode()
    def join(self, rows: Sequence[Row], prompts: Sequence[Sequence[int]], *,
             share_prefix: bool = True, free: int | None = None) -> None:
        """Prefill ``prompts`` together (left-padded, their common prefix once: see the module
        docstring) and add ``rows`` (from :meth:`new_row`, one per prompt) to the batch.
        ``free``: empty cache slots to leave after the prompts (default: enough for the
        longest limit, at most ``GROW_SLOTS``; more are added when needed)."""
        if not rows:
            return
        limit = max(r.limit for r in rows)
        free = min(limit, GROW_SLOTS) if free is None else free
        cache, mask, logits, lens = _prefill(self.model, prompts, free=free,
                                             share_prefix=share_prefix)
        if not self.rows:  # the prefill cache becomes the batch's
            self.cache, self.key_mask, self.logits, self.next_pos = cache, mask, logits, lens
        else:
            self._relayout(join=(cache, mask, logits, lens), free=min(limit, GROW_SLOTS))
        self.rows.extend(rows)

    def _relayout(self, *, join: tuple[KVCache, torch.Tensor, torch.Tensor, torch.Tensor] | None,
                  free: int) -> None:
        """Copy the cache into a new one with the leading slots no row uses dropped, ``join``'s
        rows (a prefilled cache, its key mask, logits and next positions) appended, and at least
        ``free`` empty slots after ``length``."""
        assert self.cache is not None and self.key_mask is not None and self.logits is not None
        old, mask, length = self.cache, self.key_mask, self.cache.length
        used = mask[:, :length].any(dim=0).nonzero()
        t = int(used[0]) if len(used) else length            # leading slots nobody needs
        kept = length - t
        n_join = join[0].length if join else 0
        new_len = max(kept, n_join)
        b_old = old.batch
        b_new = b_old + (join[0].batch if join else 0)
        cache = KVCache(self.model.config, b_new, new_len + max(free, 1), dtype=self.dtype,
                        device=self.device)
        new_mask = torch.ones(b_new, cache.capacity, dtype=torch.bool, device=self.device)
        new_mask[:, :new_len] = False
        off = new_len - kept
        for dst, src in zip(cache.k + cache.v, old.k + old.v):
            dst[:, :new_len].zero_()                          # padding slots: finite, masked
            dst[:b_old, off:new_len] = src[:, t:length]
        new_mask[:b_old, off:new_len] = mask[:, t:length]
        logits = self.logits
        if join:
            one, join_mask, join_logits, join_pos = join
            for dst, src in zip(cache.k + cache.v, one.k + one.v):
                dst[b_old:, new_len - n_join:new_len] = src[:, :n_join]
            new_mask[b_old:, new_len - n_join:new_len] = join_mask[:, :n_join]
            self.next_pos = torch.cat([self.next_pos, join_pos])
            logits = torch.cat([logits, join_logits])
        cache.length = new_len
        self.cache, self.key_mask, self.logits = cache, new_mask, logits

    # -- decoding --------------------------------------------------------------------------
    def _sample(self) -> list[int]:
        """One token per row from ``self.logits``; rows with equal sampling share one call."""
        assert self.logits is not None
        groups: dict[Sampling, list[int]] = {}
        for b, r in enumerate(self.rows):
            groups.setdefault(r.sampling, []).append(b)
        if len(groups) == 1:
            (s, idx), = groups.items()
            return sample_next(self.logits, temperature=s.temperature, top_k=s.top_k,
                               top_p=s.top_p, generators=[r.generator for r in self.rows]).tolist()
        out = [0] * len(self.rows)
        for s, idx in groups.items():
            sel = torch.tensor(idx, device=self.logits.device)
            toks = sample_next(self.logits.index_select(0, sel), temperature=s.temperature,
                               top_k=s.top_k, top_p=s.top_p,
                               generators=[self.rows[b].generator for b in idx]).tolist()
            for b, tok in zip(idx, toks):
                out[b] = tok
        return out

    def _keep(self, keep: list[int]) -> None:
        """Drop every row not in ``keep`` (batch indices, ascending) from the batch."""
        if len(keep) == len(self.rows):
            return
        assert self.cache is not None and self.key_mask is not None and self.logits is not None
        self.rows = [self.rows[b] for b in keep]
        if not keep:
            self.cache = self.key_mask = self.logits = None
            self.next_pos = torch.zeros(0, dtype=torch.long)
            return
        idx = torch.tensor(keep, device=self.device)
        self.cache.select(idx)
        self.key_mask = self.key_mask.index_select(0, idx)
        self.next_pos = self.next_pos.index_select(0, idx.cpu())
        self.logits = self.logits.index_select(0, idx)

    @torch.inference_mode()
    def step(self, on_tokens: Callable[[list[Row]], None] | None = None) -> list[Row]:
        """Sample one token for every row, retire the rows that finished, and run the model on
        the others' new tokens (their next logits). Cancelled rows leave first. Returns the rows
        that took part (finished ones have ``result`` set and are no longer in the batch).
        ``on_tokens(rows)`` is called with those rows once their tokens are sampled, before the
        forward pass: a server hands the new text out one forward pass earlier."""
        self._keep([b for b, r in enumerate(self.rows) if not r.cancelled])
        if not self.rows:
            return []
        nxt = self._sample()
        stepped = list(self.rows)
        for r, tok in zip(stepped, nxt):
            r._push(tok, self.tokenizer, self.stop_set)
        keep = [b for b, r in enumerate(stepped) if r.result is None]
        self._keep(keep)
        if on_tokens is not None:
            on_tokens(stepped)
        if not keep:
            return stepped
        assert self.cache is not None and self.key_mask is not None
        if self.cache.length >= self.cache.capacity:
            # grow by a quarter at least: copies stay a small share of long generations
            self._relayout(join=None, free=max(GROW_SLOTS, self.cache.length // 4))
        step_ids = torch.tensor([nxt[b] for b in keep], dtype=torch.long,
                                device=self.device)[:, None]
        self.logits = self.model(step_ids, self.next_pos[:, None].to(self.device),
                                 cache=self.cache,
                                 key_mask=self.key_mask[:, :self.cache.length + 1])[:, -1]
        self.next_pos += 1
        return stepped


@torch.inference_mode()
def generate(model: Llama, tokenizer: Tokenizer, prompts: Sequence[Sequence[int]], *,
             max_new_tokens: int | Sequence[int] = 256, temperature: float = 0.0,
             top_p: float = 1.0, top_k: int | None = None, stop: Sequence[str] = (),
             seeds: Sequence[int | None] | None = None,
             stop_ids: Sequence[int] | None = None, share_prefix: bool = True) -> list[Generated]:
    """Continue each prompt (token ids) in one batch; one :class:`Generated` per prompt.

    ``max_new_tokens``: one limit for all or one per prompt. ``stop``: strings that end a
    sequence (cut from its text). ``seeds``: per-prompt seeds in [0, 2**64) (None = fresh
    randomness). ``stop_ids``: token ids that end a turn (default: the tokenizer's).
    ``share_prefix``: run the prompts' common leading tokens (a chat template's system prompt, a
    shared instruction) once, at batch 1, and start every row's KV cache from a copy (see the
    module docstring).
    """
    n = len(prompts)
    if n == 0:
        return []
    limits = [max_new_tokens] * n if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(limits) != n or min(limits) < 1:
        raise ConfigError("max_new_tokens must be >= 1 (one value or one per prompt)")
    if any(len(p) == 0 for p in prompts):
        raise ConfigError("every prompt needs at least one token")
    seeds = list(seeds) if seeds is not None else [None] * n
    for i, (p, lim) in enumerate(zip(prompts, limits)):
        if len(p) + lim > model.config.max_seq_len:
            raise ConfigError(f"prompt {i}: {len(p)} prompt tokens + max_new_tokens {lim} "
                              f"exceeds the model's context of {model.config.max_seq_len}")
    batch = DecodeBatch(model, tokenizer, stop_ids=stop_ids)
    sampling = Sampling(temperature=temperature, top_p=top_p, top_k=top_k)
    rows = [batch.new_row(i, p, max_new_tokens=lim, sampling=sampling, stop=stop, seed=s)
            for i, (p, lim, s) in enumerate(zip(prompts, limits, seeds))]
    batch.join(rows, prompts, share_prefix=share_prefix, free=max(limits))
    while batch.rows:
        batch.step()
    return [r.result for r in rows]  # type: ignore[misc]  (every row finished above)
