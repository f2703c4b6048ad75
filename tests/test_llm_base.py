"""The Generator interface: request and parameter validation, per-request seeds, the response
cache (a re-run returns stored completions without calling the backend)."""
from __future__ import annotations

import pytest

import fastsynth.llm as llm
from fastsynth.errors import ConfigError
from fastsynth.llm.base import Completion, Generator, per_request_seeds
from fastsynth.llm.cache import CachedGenerator


class Echo(Generator):
    """A backend for testing the interface layer: returns the last message reversed."""

    model_name = "echo"

    def __init__(self):
        self.seen = []

    def _generate(self, chats, params, seeds):
        self.seen.append(len(chats))
        out = []
        for chat, seed in zip(chats, seeds):
            text = chat[-1]["content"]
            if text == "fail":
                out.append(Completion.failed("asked to fail", self.model_name))
            else:
                out.append(Completion(text[::-1] + f"|{seed}|{params.temperature}", "stop",
                                      len(text), len(text), model=self.model_name))
        return out


def chat(text):
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("requests,match", [
    ("hello", "list of chats"),
    ([[]], r"requests\[0\]"),
    (["hi"], r"requests\[0\]"),
    ([chat("ok"), [{"role": "user"}]], r"requests\[1\]\[0\]"),
    ([[{"role": "robot", "content": "x"}]], "unknown role 'robot'"),
    ([[{"role": "user", "content": 3}]], "content must be a string"),
])
def test_bad_requests_are_named(requests, match):
    with pytest.raises(ConfigError, match=match):
        Echo().generate(requests)


@pytest.mark.parametrize("kw,match", [
    ({"max_tokens": 0}, "max_tokens"), ({"max_tokens": True}, "max_tokens"),
    ({"max_tokens": 1.9}, "max_tokens"), ({"max_tokens": [1]}, "max_tokens"),
    ({"temperature": -1}, "temperature"), ({"temperature": {}}, "temperature"),
    ({"temperature": float("nan")}, "temperature"), ({"top_p": -0.1}, "top_p"),
    ({"top_p": 1.5}, "top_p"), ({"top_p": "0.5"}, "top_p"), ({"top_k": -2}, "top_k"),
    ({"stop": [""]}, "stop"), ({"stop": 5}, "stop"),
    ({"seed": [1, 2]}, "seed list has 2 entries for 1"), ({"seed": 2 ** 64}, "seed"),
    ({"seed": -1}, "seed"), ({"seed": "7"}, "seed"),
])
def test_bad_parameters_are_named(kw, match):
    with pytest.raises(ConfigError, match=match):
        Echo().generate([chat("x")], **kw)


def test_seeds_expand_per_request():
    assert per_request_seeds(5, 3) == [5, 5, 5]
    assert per_request_seeds(None, 2) == [None, None]
    assert per_request_seeds([1, None], 2) == [1, None]
    out = Echo().generate([chat("ab"), chat("cd")], seed=[3, 4], temperature=0.5)
    assert [c.text for c in out] == ["ba|3|0.5", "dc|4|0.5"]
    assert Echo().generate([]) == []


def test_a_bad_seed_in_a_list_fails_only_its_request():
    """A seed outside [0, 2**64) (or not an int) in a per-request list fails that request; its
    neighbours are generated as usual (the backend never sees the bad one)."""
    inner = Echo()
    out = inner.generate([chat("ab"), chat("cd"), chat("ef"), chat("gh")],
                         seed=[1, 2 ** 64, -3, True], temperature=0.5)
    assert out[0].text == "ba|1|0.5" and inner.seen == [1]
    assert [c.finish_reason for c in out] == ["stop", "error", "error", "error"]
    assert "2**64" in out[1].error and "request 1" in out[1].error
    assert "integer" in out[3].error
    assert Echo().generate([chat("ab")], top_p=0, temperature=1)[0].ok   # top_p=0 allowed


def test_cache_returns_stored_completions_without_regenerating(tmp_path):
    inner = Echo()
    g = CachedGenerator(inner, tmp_path)
    reqs = [chat("one"), chat("fail"), chat("two")]
    first = g.generate(reqs, seed=1, temperature=0.7)
    assert inner.seen == [3]
    again = g.generate(reqs, seed=1, temperature=0.7)
    assert inner.seen == [3, 1]                     # only the failed request is retried
    assert [c.text for c in again] == [c.text for c in first]
    assert again[1].finish_reason == "error"
    g.generate([chat("one")], seed=2, temperature=0.7)          # new seed -> new key
    g.generate([chat("one")], seed=1, temperature=0.8)          # new parameters -> new key
    assert inner.seen == [3, 1, 1, 1]
    g.close()
    # persisted on disk: a new process (a new wrapper) finds it
    inner2 = Echo()
    g2 = CachedGenerator(inner2, tmp_path)
    assert g2.generate([chat("two")], seed=1, temperature=0.7)[0].text == "owt|1|0.7"
    assert inner2.seen == [] and g2.hits == 1


def test_unseeded_sampling_is_not_cached_but_greedy_is(tmp_path):
    inner = Echo()
    g = CachedGenerator(inner, tmp_path)
    g.generate([chat("x")], temperature=1.0)
    g.generate([chat("x")], temperature=1.0)
    assert inner.seen == [1, 1]
    g.generate([chat("x")])
    g.generate([chat("x")], seed=9)                 # greedy: the seed does not matter
    assert inner.seen == [1, 1, 1]


def test_factory_wraps_with_cache_and_rejects_unknown_backend(tmp_path):
    with pytest.raises(ConfigError, match="'llama.cpp'"):
        llm.generator("llama.cpp")
    assert isinstance(Completion("a", "stop"), Completion) and Completion("a", "stop").ok


def test_a_damaged_cache_file_is_named_with_the_recovery(tmp_path):
    from fastsynth.errors import InputError
    (tmp_path / "responses.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(InputError, match=r"responses\.sqlite.*delete it"):
        CachedGenerator(Echo(), tmp_path)
    (tmp_path / "responses.sqlite").unlink()
    g = CachedGenerator(Echo(), tmp_path)           # deleting it is the recovery
    assert g.generate([chat("ab")])[0].text == "ba|None|0.0"
