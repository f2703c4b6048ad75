"""The local backend with the embedded SmolLM2-135M-Instruct: real answers, batching that
does not change greedy text, seeds, stops, limits, context errors kept per request, cache."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")

import fastsynth.llm as llm  # noqa: E402
from fastsynth.errors import ConfigError, InputError  # noqa: E402


@pytest.fixture(scope="module")
def gen():
    return llm.generator("local", batch_size=4)


def chat(text):
    return [{"role": "user", "content": text}]


def test_answers_a_question(gen):
    c = gen.generate([chat("What is the capital of France?")], max_tokens=24)[0]
    assert "Paris" in c.text and c.finish_reason == "stop" and c.error is None
    assert c.model == gen.model_name == "SmolLM2-135M-Instruct.Q4_1"
    assert c.prompt_tokens == len(gen.prompt_ids(chat("What is the capital of France?")))
    assert 0 < c.completion_tokens < 24
    assert gen.context_length == 8192 and gen.count_tokens("hello world") == 2


def test_batch_equals_single_and_context_errors_stay_per_request(gen):
    reqs = [chat("Name a fruit."), chat("word " * 9000), chat("Name a planet."),
            chat("Say hi.")]
    out = gen.generate(reqs, max_tokens=12)
    assert out[1].finish_reason == "error" and "context is 8192" in out[1].error
    assert out[1].prompt_tokens > 8192
    for r, c in zip(reqs, out):
        if c.ok:
            assert c.text and c.text == gen.generate([r], max_tokens=12)[0].text


def test_seeds_stop_strings_and_limits(gen):
    reqs = [chat("Write a short poem about rain."), chat("Tell me a fact about cats.")]
    a = gen.generate(reqs, max_tokens=10, temperature=0.9, top_p=0.95, seed=[5, 6])
    b = gen.generate(reqs[::-1], max_tokens=10, temperature=0.9, top_p=0.95, seed=[6, 5])
    assert [c.text for c in a] == [c.text for c in b[::-1]]
    short = gen.generate(reqs[:1], max_tokens=3)[0]
    assert short.finish_reason == "length" and short.completion_tokens == 3
    full = gen.generate(reqs[:1], max_tokens=16)[0].text
    words = full.split()
    assert len(words) >= 3
    cut = gen.generate(reqs[:1], max_tokens=16, stop=[words[2]])[0]
    assert cut.finish_reason == "stop" and cut.text == full[:full.find(words[2])]


def test_cache_skips_regeneration(gen, tmp_path):
    from fastsynth.llm.cache import CachedGenerator
    cached = CachedGenerator(gen, tmp_path)
    reqs = [chat("Name an ocean."), chat("Name a river.")]
    first = cached.generate(reqs, max_tokens=10)
    second = cached.generate(reqs, max_tokens=10)
    assert (cached.hits, cached.misses) == (2, 2)      # the second call reached no model
    assert [c.text for c in first] == [c.text for c in second]


def test_bad_options_and_paths_are_named(tmp_path):
    with pytest.raises(ConfigError, match="dtype"):
        llm.generator("local", dtype="int3")
    with pytest.raises(InputError, match="missing.gguf"):
        llm.generator("local", model=tmp_path / "missing.gguf")


def test_completion_tokens_count_the_end_of_turn_token(gen):
    """The convention of every backend (vLLM's and OpenAI's): a completion that ended with the
    end-of-turn token counts it. With max_tokens one lower the same text ends by length."""
    req = [chat("What is the capital of France?")]
    full = gen.generate(req, max_tokens=48)[0]
    assert full.finish_reason == "stop"
    n = full.completion_tokens
    cut = gen.generate(req, max_tokens=n - 1)[0]
    assert cut.finish_reason == "length" and cut.completion_tokens == n - 1
    assert cut.text == full.text


def test_a_bad_seed_fails_only_its_request(gen):
    reqs = [chat("Name a fruit."), chat("Name a colour.")]
    out = gen.generate(reqs, max_tokens=4, temperature=0.8, seed=[2 ** 64, 7])
    assert out[0].finish_reason == "error" and "2**64" in out[0].error
    assert out[1].ok and out[1].text == gen.generate(reqs[1:], max_tokens=4, temperature=0.8,
                                                     seed=7)[0].text
