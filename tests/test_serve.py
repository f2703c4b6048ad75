"""``fastsynth serve`` as a real subprocess on a free local port, driven by the openai backend
and by ``fastsynth generate``; plus ``fastsynth generate`` on the local backend and its
input errors."""
from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest

pytest.importorskip("torch")
pytest.importorskip("aiohttp")

import fastsynth.llm as llm  # noqa: E402
from serve_process import CLI, ENV, running_server  # noqa: E402


@pytest.fixture(scope="module")
def server():
    with running_server(batch_size=4) as url:
        yield url


def chat(text):
    return [{"role": "user", "content": text}]


def test_models_endpoint(server):
    with urllib.request.urlopen(f"{server}/models") as r:
        data = json.load(r)
    assert data["data"][0]["id"] == "SmolLM2-135M-Instruct.Q4_1"
    assert data["data"][0]["max_model_len"] == 8192


def test_openai_backend_against_fastsynth_serve(server):
    g = llm.generator("openai", base_url=server, concurrency=4)
    assert g.model_name == "SmolLM2-135M-Instruct.Q4_1"
    reqs = [chat("What is the capital of France?"), chat("word " * 9000),
            chat("Name a planet."), chat("Say hi.")]
    out = g.generate(reqs, max_tokens=16)
    assert "Paris" in out[0].text and out[0].finish_reason == "stop"
    assert out[1].finish_reason == "error" and "context" in out[1].error
    assert out[2].ok and out[3].ok and out[2].completion_tokens > 0
    # the server's greedy answer equals the in-process local backend's
    local = llm.generator("local")
    here = local.generate(reqs[:1], max_tokens=16)[0]
    assert here.text == out[0].text
    # one token-count convention (end-of-turn token counted) over HTTP and in process, and
    # the same answer with plain (non-streamed) requests
    assert here.completion_tokens == out[0].completion_tokens
    assert here.prompt_tokens == out[0].prompt_tokens
    plain = llm.generator("openai", base_url=server, stream=False).generate(reqs[:1],
                                                                            max_tokens=16)[0]
    assert (plain.text, plain.completion_tokens) == (out[0].text, out[0].completion_tokens)
    short = g.generate([chat("Write a long story.")], max_tokens=4)[0]
    assert short.finish_reason == "length" and short.completion_tokens == 4


def test_server_rejects_bad_requests(server):
    req = urllib.request.Request(f"{server}/chat/completions", method="POST",
                                 data=json.dumps({"messages": "hi"}).encode(),
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    err = json.load(e.value)["error"]
    assert e.value.code == 400 and err["param"] == "messages"
    assert err["type"] == "invalid_request_error" and "messages" in err["message"]


def test_generate_cli_over_openai_backend(server, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "q1", "prompt": "Name a colour."}) + "\n"
                       + json.dumps({"messages": chat("Name a number."), "seed": 3}) + "\n")
    out = tmp_path / "out.jsonl"
    r = subprocess.run([*CLI, "generate", str(prompts), "-o", str(out), "--backend", "openai",
                        "--base-url", server, "--max-tokens", "8"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["q1", 1]
    assert all(row["text"] and row["error"] is None for row in rows)
    assert "tokens/s" in r.stderr and "2 completions (0 errors)" in r.stderr


def test_generate_cli_local_and_bad_input(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "Say yes."}) + "\n")
    out = tmp_path / "o.jsonl"
    r = subprocess.run([*CLI, "generate", str(prompts), "-o", str(out), "--max-tokens", "4",
                        "--cache-dir", str(tmp_path / "cache")],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    row = json.loads(out.read_text())
    assert row["completion_tokens"] > 0 and row["model"] == "SmolLM2-135M-Instruct.Q4_1"
    assert (tmp_path / "cache" / "responses.sqlite").is_file()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"text": "no prompt"}) + "\n")
    r = subprocess.run([*CLI, "generate", str(bad), "-o", str(out)], capture_output=True,
                       text=True, env=ENV, timeout=120)
    assert r.returncode == 2 and "bad.jsonl:2" in r.stderr and "Traceback" not in r.stderr


def test_generate_cli_keeps_every_record_and_names_bad_ones(server, tmp_path):
    """--on-error skip: non-UTF-8 bytes, a lone-surrogate id, a bad seed go to the rejects file
    with their line; the good records are generated (in = out + rejects). --on-error raise
    (default): one line naming file:line, no traceback, nothing written. A damaged cache
    database: one line naming it and the recovery."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_bytes(b'{"id": "q1", "prompt": "Name a colour."}\n'
                        b'{"prompt": "caf\xe9"}\n'
                        b'{"id": "\\udc80", "prompt": "Name a number."}\n'
                        b'{"prompt": "Name a fruit.", "seed": 18446744073709551616}\n'
                        b'{"id": "q5", "prompt": "Name a planet."}\n')
    out = tmp_path / "out.jsonl"
    base = [*CLI, "generate", str(prompts), "-o", str(out), "--backend", "openai",
            "--base-url", server, "--max-tokens", "4"]
    r = subprocess.run([*base, "--on-error", "skip"], capture_output=True, text=True, env=ENV,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["q1", "q5"] and all(row["text"] for row in rows)
    rejects = [json.loads(line) for line in (tmp_path / "out.rejects.jsonl").read_text()
               .splitlines()]
    assert [(j["line"], j["reason"]) for j in rejects] == [
        (2, "invalid_utf8"), (3, "invalid_utf8"), (4, "invalid_seed")]
    assert "5 records: 2 completions (0 errors), 3 rejected" in r.stderr
    out.unlink()
    r = subprocess.run(base, capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "p.jsonl:2: invalid UTF-8" in r.stderr and not out.exists()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "responses.sqlite").write_bytes(b"garbage" * 1000)
    prompts.write_text(json.dumps({"prompt": "Say hi."}) + "\n")
    r = subprocess.run([*base, "--cache-dir", str(cache)], capture_output=True, text=True,
                       env=ENV, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "responses.sqlite" in r.stderr and "delete it" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
