"""The ``vllm`` backend: an in-process ``vllm.LLM`` engine (GPU machines).

vLLM pins a CUDA build of torch, so it is an optional extra (``fastsynth[vllm]``) and is not
installed on CPU-only machines; there, ``vllm serve`` + the ``openai`` backend is the usual
route. A fastsynth checkpoint written by :func:`fastsynth.model.save_hf` loads here directly.
"""
from __future__ import annotations

from typing import Any

from fastsynth.errors import DependencyError
from fastsynth.llm.base import Completion, Generator, SamplingParams


class VLLMGenerator(Generator):
    """Generate with ``vllm.LLM(model, **engine_args)`` in this process.

    ``model``: an HF model id or checkpoint folder (or a GGUF file vLLM accepts).
    ``engine_args``: passed to ``vllm.LLM`` (e.g. ``dtype``, ``gpu_memory_utilization``,
    ``max_model_len``, ``tensor_parallel_size``).
    """

    def __init__(self, model: str, *, name: str | None = None, **engine_args: Any):
        try:
            import vllm
        except ImportError as e:
            raise DependencyError("vllm", "vllm", "the vllm backend") from e
        self._vllm = vllm
        self.llm = vllm.LLM(model=model, **engine_args)
        self.tokenizer = self.llm.get_tokenizer()
        self.model_name = name or str(model)
        try:
            self.context_length = int(self.llm.llm_engine.model_config.max_model_len)
        except AttributeError:  # engine internals moved between vLLM versions
            self.context_length = None

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def _sampling(self, params: SamplingParams, seed: int | None, max_tokens: int) -> Any:
        return self._vllm.SamplingParams(
            n=1, max_tokens=max_tokens, temperature=params.temperature, top_p=params.top_p,
            top_k=params.top_k if params.top_k else -1, seed=seed,
            stop=list(params.stop) or None)

    def _generate(self, chats: list[list[dict[str, str]]], params: SamplingParams,
                  seeds: list[int | None]) -> list[Completion]:
        out: list[Completion | None] = [None] * len(chats)
        todo, sps = [], []
        for i, chat in enumerate(chats):
            n = len(self.tokenizer.apply_chat_template(chat, tokenize=True,
                                                       add_generation_prompt=True))
            room = (self.context_length or n + params.max_tokens) - n
            if room < 1:
                out[i] = Completion.failed(f"prompt has {n} tokens; the model's context is "
                                           f"{self.context_length} tokens", self.model_name, n)
                continue
            todo.append(i)
            sps.append(self._sampling(params, seeds[i], min(params.max_tokens, room)))
        try:
            results = self.llm.chat([chats[i] for i in todo], sampling_params=sps,
                                    use_tqdm=False)
        except Exception:  # isolate the failing request: retry one by one
            results = []
            for i, sp in zip(todo, sps):
                try:
                    results.extend(self.llm.chat([chats[i]], sampling_params=[sp], use_tqdm=False))
                except Exception as e:
                    results.append(e)
        for i, r in zip(todo, results):
            if isinstance(r, Exception):
                out[i] = Completion.failed(f"{type(r).__name__}: {r}", self.model_name)
                continue
            o = r.outputs[0]
            out[i] = Completion(text=o.text,
                                finish_reason="length" if o.finish_reason == "length" else "stop",
                                prompt_tokens=len(r.prompt_token_ids or []),
                                completion_tokens=len(o.token_ids), model=self.model_name)
        return out  # type: ignore[return-value]
