"""Prompt files: every line ends as a good record or a reject entry with its line and reason
(skip), or the first bad one is named with file and line (raise); nothing else."""
from __future__ import annotations

import json

import pytest

from fastsynth.cli.local_options import parse_engine_args
from fastsynth.errors import ConfigError, InputError
from fastsynth.llm.prompts import read_prompts

LINES = [
    json.dumps({"id": "a", "prompt": "fine"}).encode(),
    b'{"prompt": "caf\xe9"}',                                   # Latin-1 byte: not UTF-8
    b'{"id": "\\ud800", "prompt": "lone surrogate id"}',
    b'{"prompt": "x", "seed": 18446744073709551616}',
    b'{"prompt": "x", "seed": -1}',
    b"",                                                        # blank: not a record
    b"[1, 2]",
    b'{"prompt": ',
    b'{"text": "no prompt"}',
    json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(),
    b'[' * 5000 + b']' * 5000,
    json.dumps({"messages": [{"role": "user", "content": "ok"}], "seed": 7, "id": None}).encode(),
    json.dumps({"prompt": "no id"}).encode(),
]
REASONS = {2: "invalid_utf8", 3: "invalid_utf8", 4: "invalid_seed", 5: "invalid_seed",
           7: "not_an_object", 8: "malformed_json", 9: "missing_prompt", 10: "invalid_messages",
           11: "malformed_json"}


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "prompts.jsonl"
    p.write_bytes(b"\n".join(LINES) + b"\n")
    return p


def test_skip_keeps_every_record_as_good_or_reject(path):
    pf = read_prompts(path, on_error="skip")
    assert pf.read == len(LINES) - 1 == len(pf.ids) + len(pf.rejects)
    assert {r["line"]: r["reason"] for r in pf.rejects} == REASONS
    assert pf.lines == [1, 12, 13]
    assert pf.ids == ["a", None, 2] and pf.seeds == [None, 7, None]
    assert pf.chats[0] == [{"role": "user", "content": "fine"}]
    for r in pf.rejects:  # each entry names file and line; raw is always writable UTF-8
        assert r["detail"].startswith(f"{path}:{r['line']}: ")
        json.dumps(r, ensure_ascii=False).encode("utf-8")
    assert "\\xe9" in next(r["raw"] for r in pf.rejects if r["line"] == 2)


def test_raise_names_the_first_bad_line(path):
    with pytest.raises(InputError, match=r"prompts\.jsonl:2: invalid UTF-8 at byte 15"):
        read_prompts(path)
    with pytest.raises(ConfigError, match="on_error"):
        read_prompts(path, on_error="ignore")


def test_engine_args_are_typed():
    assert parse_engine_args(["dtype=float32", "max_model_len=4096", "enforce_eager=true",
                              "gpu_memory_utilization=0.5", "x=null", "tag=a=b"]) == {
        "dtype": "float32", "max_model_len": 4096, "enforce_eager": True,
        "gpu_memory_utilization": 0.5, "x": None, "tag": "a=b"}
    for bad in (["dtype"], ["=1"], ["a-b=1"], ["a=1", "a=2"]):
        with pytest.raises(ConfigError, match="engine-arg"):
            parse_engine_args(bad)


def test_synth_engine_args_need_a_vllm_backend(tmp_path, capsys):
    from fastsynth.cli import main

    rc = main(["synth", "builtin:python-docs", "-o", str(tmp_path / "out"), "--limit", "1",
               "--engine-arg", "dtype=float32"])
    assert rc == 2
    assert "--engine-arg is only for --backend vllm" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags,needle", [
    (["--backend", "vllm"], "--model is required with the vllm backend"),
    (["--answer-backend", "vllm"], "--answer-model is required with the vllm backend"),
    (["--executor", "ray", "--backend", "vllm"], "--model is required with the vllm backend"),
])
def test_synth_vllm_needs_a_model(tmp_path, capsys, flags, needle):
    from fastsynth.cli import main

    rc = main(["synth", "builtin:python-docs", "-o", str(tmp_path / "out"), "--limit", "1", *flags])
    assert rc == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_synth_engine_args_reach_only_the_vllm_generators(monkeypatch):
    # The recorder replaces the backend factory, not the code under test (the CLI's plumbing);
    # vLLM itself is exercised by scripts/test-vllm.sh, which passes --engine-arg to synth.
    import fastsynth.llm
    from fastsynth.cli import synth

    made = []
    monkeypatch.setattr(fastsynth.llm, "generator", lambda backend, **kw: made.append((backend, kw)))
    engine = parse_engine_args(["dtype=float32", "max_model_len=2048"])
    synth._gen("vllm", "/m", None, None, engine)
    synth._gen("openai", "m", "http://127.0.0.1:1/v1", None, engine)
    assert made == [("vllm", {"dtype": "float32", "max_model_len": 2048, "model": "/m", "cache_dir": None}),
                    ("openai", {"model": "m", "base_url": "http://127.0.0.1:1/v1", "cache_dir": None})]
