"""The Generator interface: chat requests in, completions out, for every backend.

A *request* is a chat, a list of messages ``[{"role": "user", "content": "..."}, ...]``
(roles ``system``, ``user``, ``assistant``). A backend turns a list of requests plus
sampling parameters into one :class:`Completion` per request, in request order.

Failure contract: a request that fails (a server that keeps answering 500, a prompt longer
than the context, a seed outside [0, 2**64) in a per-request seed list) comes back as
``Completion(finish_reason="error", error=...)``; the other completions are kept. ``generate``
raises only for bad parameters shared by every request (``ConfigError``), before any work
starts.

Token counts: ``completion_tokens`` counts every generated token, including the end-of-sequence
token that ended a completion (vLLM's and OpenAI's convention; every backend follows it).
"""
from __future__ import annotations

import abc
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Mapping, Sequence

from fastsynth.errors import ConfigError

Message = Mapping[str, str]
Chat = Sequence[Message]
FinishReason = Literal["stop", "length", "error"]

_ROLES = frozenset({"system", "user", "assistant"})


@dataclass
class Completion:
    """One generated answer.

    ``finish_reason``: ``"stop"`` (end-of-sequence token or a stop string; the stop string is
    not included in ``text``), ``"length"`` (``max_tokens`` reached) or ``"error"`` (``error``
    says why; ``text`` is then empty). Token counts are in the backend's tokenizer.
    """

    text: str
    finish_reason: FinishReason
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    model: str = ""

    @property
    def ok(self) -> bool:
        return self.finish_reason != "error"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def failed(cls, error: str, model: str = "", prompt_tokens: int = 0) -> "Completion":
        return cls(text="", finish_reason="error", prompt_tokens=prompt_tokens,
                   completion_tokens=0, error=error, model=model)


@dataclass(frozen=True)
class SamplingParams:
    """Sampling parameters shared by all backends (OpenAI semantics).

    ``temperature == 0`` means greedy decoding (top_p/top_k/seed then have no effect).
    ``top_p`` in [0, 1]; 0 keeps only the most likely token (the limit of top_p -> 0+).
    ``top_k`` None or 0 disables top-k. ``stop`` strings end a completion and are cut from it.
    """

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not _is_int(self.max_tokens) or self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if not _is_real(self.temperature) or not self.temperature >= 0.0:
            raise ConfigError(f"temperature must be a finite number >= 0, got "
                              f"{self.temperature!r}")
        if not _is_real(self.top_p) or not 0.0 <= self.top_p <= 1.0:
            raise ConfigError(f"top_p must be a number in [0, 1], got {self.top_p!r}")
        if self.top_k is not None and (not _is_int(self.top_k) or self.top_k < 0):
            raise ConfigError(f"top_k must be None or a non-negative integer, got {self.top_k!r}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ConfigError(f"stop must be non-empty strings, got {self.stop!r}")
        # ints are fine to pass; stored as floats so equal settings give equal cache keys
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_p", float(self.top_p))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_real(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# Seeds are 64-bit unsigned integers (torch.Generator's range; vLLM and OpenAI take ints).
SEED_LIMIT = 2 ** 64


def seed_error(seed: object) -> str | None:
    """Why ``seed`` is not a valid seed (None or an int in [0, 2**64)), or None if it is."""
    if seed is None:
        return None
    if not _is_int(seed):
        return f"seed must be an integer or null, got {type(seed).__name__}"
    if not 0 <= seed < SEED_LIMIT:  # type: ignore[operator]
        return f"seed must be in [0, 2**64), got {seed}"
    return None


def normalize_stop(stop: str | Sequence[str] | None) -> tuple[str, ...]:
    """``stop`` as a tuple of strings (a single string means one stop string)."""
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if not isinstance(stop, Sequence):
        raise ConfigError(f"stop must be a string, a list of strings or None, got "
                          f"{type(stop).__name__}")
    return tuple(stop)


def check_requests(requests: Sequence[Chat]) -> list[list[dict[str, str]]]:
    """Validate chat requests; returns them as plain lists of dicts.

    Raises ``ConfigError`` naming the request index and message index at fault.
    """
    if isinstance(requests, (str, bytes)) or not isinstance(requests, Sequence):
        raise ConfigError("requests must be a list of chats (lists of {'role','content'} dicts)")
    out = []
    for i, chat in enumerate(requests):
        if isinstance(chat, (str, bytes, Mapping)) or not isinstance(chat, Sequence) or not chat:
            raise ConfigError(f"requests[{i}] must be a non-empty list of messages, got "
                              f"{type(chat).__name__}")
        msgs = []
        for j, m in enumerate(chat):
            if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
                raise ConfigError(f"requests[{i}][{j}] must be a dict with 'role' and 'content'")
            if m["role"] not in _ROLES:
                raise ConfigError(f"requests[{i}][{j}]: unknown role {m['role']!r} "
                                  f"(expected one of {sorted(_ROLES)})")
            if not isinstance(m["content"], str):
                raise ConfigError(f"requests[{i}][{j}]: content must be a string")
            msgs.append({"role": str(m["role"]), "content": m["content"]})
        out.append(msgs)
    return out


def per_request_seeds(seed: int | Sequence[int | None] | None, n: int) -> list[Any]:
    """Expand ``seed`` to one seed per request.

    An int applies to every request (each request is sampled with its own generator seeded
    with it, so the same (request, seed) gives the same text whatever else is in the batch);
    a list gives one seed per request; None leaves sampling unseeded. A single seed that is
    not an int in [0, 2**64) raises ``ConfigError``; a bad entry of a list is returned as is
    (:meth:`Generator.generate` fails that request only, see :func:`seed_error`).
    """
    if seed is None or _is_int(seed):
        err = seed_error(seed)
        if err:
            raise ConfigError(err)
        return [seed] * n
    if isinstance(seed, (str, bytes)) or not isinstance(seed, Sequence):
        raise ConfigError(f"seed must be an int, a list of ints, or None, got "
                          f"{type(seed).__name__}")
    seeds = list(seed)
    if len(seeds) != n:
        raise ConfigError(f"seed list has {len(seeds)} entries for {n} requests")
    return seeds


class Generator(abc.ABC):
    """Turns chat requests into completions. Backends: local, openai, vllm.

    Subclasses implement :meth:`_generate` with validated inputs; :meth:`generate` does the
    validation common to all backends. ``model_name`` names the model (it is part of every
    response-cache key). ``context_length`` is the model's maximum sequence length in tokens
    (prompt + completion) when known, else None.
    """

    model_name: str = ""
    context_length: int | None = None

    def generate(self, requests: Sequence[Chat], *, max_tokens: int = 256,
                 temperature: float = 0.0, top_p: float = 1.0, top_k: int | None = None,
                 seed: int | Sequence[int | None] | None = None,
                 stop: str | Sequence[str] | None = None) -> list[Completion]:
        """One completion per request, in request order.

        ``max_tokens``: most new tokens per completion. ``temperature`` 0 = greedy.
        ``seed``: an int for every request or a list with one per request (see
        :func:`per_request_seeds`). ``stop``: string(s) that end a completion (not included).
        Per-request failures (a bad entry of a seed list included) come back as
        ``finish_reason="error"`` completions.
        """
        chats = check_requests(requests)
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature,
                                top_p=top_p, top_k=top_k, stop=normalize_stop(stop))
        seeds = per_request_seeds(seed, len(chats))
        if not chats:
            return []
        errors = [seed_error(s) for s in seeds]
        good = [i for i, e in enumerate(errors) if e is None]
        if len(good) == len(chats):
            return self._generate(chats, params, seeds)
        out = [Completion.failed(f"request {i}: {e}", self.model_name) if e else None
               for i, e in enumerate(errors)]
        if good:
            for i, c in zip(good, self._generate([chats[i] for i in good], params,
                                                 [seeds[i] for i in good])):
                out[i] = c
        return out  # type: ignore[return-value]

    @abc.abstractmethod
    def _generate(self, chats: list[list[dict[str, str]]], params: SamplingParams,
                  seeds: list[int | None]) -> list[Completion]:
        """Backend work: ``len(result) == len(chats)``; never raises for one bad request."""

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` under this model's tokenizer (backends that know it)."""
        raise NotImplementedError(f"{type(self).__name__} cannot count tokens")

    def close(self) -> None:
        """Release resources (sessions, engines). Safe to call twice."""

    def __enter__(self) -> "Generator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
