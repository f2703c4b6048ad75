"""Batched, KV-cached text generation for :class:`fastsynth.model.Llama`.

Layout: the leading tokens all prompts share (a chat template's system prompt, a common
instruction) are computed once, at batch 1, and copied into the first cache slots of every row
(prefix sharing, as vLLM's prefix caching does; ``share_prefix=False`` turns it off). The rest
of each prompt is **left-padded** to the longest one after that prefix; padding slots are masked
out of attention with a key mask, and every sequence gets its own RoPE positions starting at 0
(so neither the prefix copy nor padding shifts a sequence's positions: a token's keys depend on
its position, not on its slot). The KV cache is preallocated for ``prefix + longest rest +
max_new_tokens`` slots. Finished sequences leave the batch (their cache
rows are dropped), so the remaining ones run on a smaller batch.

Sampling: greedy when ``temperature == 0``; otherwise temperature, then top-k, then top-p
(nucleus) filtering, then one draw from each row's own ``torch.Generator``. A row's generator is
seeded with its request's seed, so the same (prompt, seed) draws the same random numbers
whatever else is in the batch. (Its logits can still differ in the last float bits between
batch shapes, which in rare near-ties changes a token.)
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

from fastsynth.errors import ConfigError
from fastsynth.model.llama import KVCache, Llama
from fastsynth.model.tokenizer import Tokenizer


@dataclass
class Generated:
    """One finished sequence: new token ids (end-of-turn token excluded), its text (stop string
    cut), and why it ended: ``"stop"`` (end-of-turn token or stop string) or ``"length"``."""

    tokens: list[int]
    text: str
    finish_reason: str


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
        # drop a token when the tokens ranked above it already reach top_p (the top one stays)
        drop = (cum - sorted_scores.softmax(dim=-1)) >= top_p
        sorted_scores = sorted_scores.masked_fill(drop, float("-inf"))
        scores = torch.empty_like(scores).scatter_(-1, order, sorted_scores)
    probs = scores.softmax(dim=-1)
    return torch.cat([torch.multinomial(probs[i], 1, generator=g)
                      for i, g in enumerate(generators)])


# Shorter common prefixes are not worth a separate forward pass.
MIN_SHARED_PREFIX = 8


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


@torch.inference_mode()
def generate(model: Llama, tokenizer: Tokenizer, prompts: Sequence[Sequence[int]], *,
             max_new_tokens: int | Sequence[int] = 256, temperature: float = 0.0,
             top_p: float = 1.0, top_k: int | None = None, stop: Sequence[str] = (),
             seeds: Sequence[int | None] | None = None,
             stop_ids: Sequence[int] | None = None, share_prefix: bool = True) -> list[Generated]:
    """Continue each prompt (token ids) in one batch; one :class:`Generated` per prompt.

    ``max_new_tokens``: one limit for all or one per prompt. ``stop``: strings that end a
    sequence (cut from its text). ``seeds``: per-prompt seeds (None = fresh randomness).
    ``stop_ids``: token ids that end a turn (default: the tokenizer's). ``share_prefix``: run
    the prompts' common leading tokens (a chat template's system prompt, a shared instruction)
    once, at batch 1, and start every row's KV cache from a copy (see the module docstring).
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
    gens = [torch.Generator().manual_seed(s if s is not None else random.getrandbits(63))
            for s in seeds]
    stop_set = set(tokenizer.stop_ids if stop_ids is None else stop_ids)
    dev = model.embed.weight.device
    dtype = model.embed.weight.dtype

    lens = torch.tensor([len(p) for p in prompts])
    for i, (p, lim) in enumerate(zip(prompts, limits)):
        if len(p) + lim > model.config.max_seq_len:
            raise ConfigError(f"prompt {i}: {len(p)} prompt tokens + max_new_tokens {lim} "
                              f"exceeds the model's context of {model.config.max_seq_len}")
    # Cache slots: [shared prefix | left padding | rest of each prompt | new tokens].
    shared = shared_prefix_length(prompts) if share_prefix else 0
    width = int(lens.max()) - shared                         # per-row part, padded
    capacity = shared + width + max(limits)
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
    key_mask = key_mask.to(dev)
    next_pos = lens.clone()

    rows = list(range(n))                                    # original index of each batch row
    out_tokens: list[list[int]] = [[] for _ in range(n)]
    results: list[Generated | None] = [None] * n
    while rows:
        nxt = sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                          generators=[gens[r] for r in rows]).tolist()
        keep = []
        for b, (r, tok) in enumerate(zip(rows, nxt)):
            reason = None
            if tok in stop_set:
                reason = "stop"
            else:
                out_tokens[r].append(tok)
                if stop:
                    text = tokenizer.decode(out_tokens[r])
                    cut = _find_stop(text, stop)
                    if cut >= 0:
                        results[r] = Generated(out_tokens[r], text[:cut], "stop")
                        continue
                if len(out_tokens[r]) >= limits[r]:
                    reason = "length"
            if reason is None:
                keep.append(b)
            else:
                results[r] = Generated(out_tokens[r], tokenizer.decode(out_tokens[r]), reason)
        if not keep:
            break
        if len(keep) < len(rows):
            idx = torch.tensor(keep, device=dev)
            cache.select(idx)
            key_mask = key_mask.index_select(0, idx)
            next_pos = next_pos.index_select(0, idx.cpu())
            rows = [rows[b] for b in keep]
            nxt = [nxt[b] for b in keep]
        step_ids = torch.tensor(nxt, dtype=torch.long, device=dev)[:, None]
        logits = model(step_ids, next_pos[:, None].to(dev), cache=cache,
                       key_mask=key_mask[:, :cache.length + 1])[:, -1]
        next_pos += 1
    return results  # type: ignore[return-value]  (every row finished above)
