"""The vllm backend. Without vLLM: the factory names the extra, and the prompt-length pre-check
counts tokens right with the same ``transformers`` tokenizer API vLLM hands out. With vLLM
(``scripts/test-vllm.sh`` sets its CPU build up): fp32 answers equal to the local backend's,
per-request context errors, the end-of-sequence token counted, and ``close()`` stopping the
engine's processes."""
from __future__ import annotations

import importlib.util

import pytest

import fastsynth.llm as llm
from fastsynth.errors import DependencyError

HAS_VLLM = importlib.util.find_spec("vllm") is not None
CHATS = [[{"role": "user", "content": "What is the capital of France?"}],
         [{"role": "system", "content": "Be brief."},
          {"role": "user", "content": "Name three colours, " + "please " * 40}]]


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed")
def test_missing_vllm_names_the_extra():
    with pytest.raises(DependencyError, match=r"fastsynth\[vllm\]"):
        llm.generator("vllm", model="any")


def test_known_model_name_without_making_a_generator():
    """What the Ray driver reports for saved call groups: the vllm backend's name is its model
    argument (as VLLMGenerator reports it), the local backend's the file stem; the openai
    backend may ask its server, so it is not known; an unknown backend is named."""
    from fastsynth.errors import ConfigError
    from fastsynth.llm.local import model_name_of

    assert llm.known_model_name("vllm", "/models/smollm2-hf") == "/models/smollm2-hf"
    assert llm.known_model_name("local", "/models/SmolLM2-135M-Instruct.Q4_1.gguf") == \
        "SmolLM2-135M-Instruct.Q4_1"
    assert llm.known_model_name("local") == model_name_of(None)
    assert llm.known_model_name("openai", "smollm2") is None
    with pytest.raises(ConfigError, match="'vlm'"):
        llm.known_model_name("vlm", "x")


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    pytest.importorskip("torch")
    from fastsynth.model import load, save_hf
    model, tok = load()
    path = tmp_path_factory.mktemp("smollm2-hf")
    save_hf(model, path, tokenizer=tok)
    return path, tok


def test_prompt_token_count_with_a_transformers_tokenizer(tmp_path):
    """What vLLM's get_tokenizer() returns (a transformers fast tokenizer, here loaded from the
    embedded model's tokenizer in HF layout) counts the same tokens as fastsynth's own template
    + tokenizer."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from fastsynth.llm.vllm import prompt_token_count
    from fastsynth.model.gguf_file import open_gguf
    from fastsynth.model.loading import default_model_path
    from fastsynth.model.tokenizer import Tokenizer
    path = default_model_path()
    tok = Tokenizer.from_gguf(open_gguf(path), path)
    tok.save(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    for chat in CHATS:
        want = len(tok.encode(tok.apply_chat_template(chat)))
        assert want > 10 and prompt_token_count(hf, chat) == want


@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (scripts/test-vllm.sh)")
def test_vllm_matches_the_local_backend_and_closes(hf_checkpoint):  # pragma: no cover
    psutil = pytest.importorskip("psutil")
    path, _ = hf_checkpoint
    g = llm.generator("vllm", model=str(path), max_model_len=2048)
    reqs = [CHATS[0], [{"role": "user", "content": "x " * 20000}], CHATS[1]]
    out = g.generate(reqs, max_tokens=16)
    assert "Paris" in out[0].text and out[0].finish_reason == "stop"
    assert out[1].finish_reason == "error" and "context" in out[1].error
    local = llm.generator("local").generate([reqs[0], reqs[2]], max_tokens=16)
    assert [c.text for c in local] == [out[0].text, out[2].text]
    assert [c.completion_tokens for c in local] == [out[0].completion_tokens,
                                                     out[2].completion_tokens]
    # multiprocessing's resource tracker lives until this process exits: not an engine process
    before = [p for p in psutil.Process().children(recursive=True)
              if "resource_tracker" not in " ".join(p.cmdline())]
    g.close()
    g.close()
    gone, alive = psutil.wait_procs(before, timeout=30)
    assert not alive, f"engine processes still running after close(): {alive}"


@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (scripts/test-vllm.sh)")
def test_synth_stage_with_vllm_actors_on_ray_equals_local(hf_checkpoint, tmp_path):  # pragma: no cover
    """The run's synth stage with ``backend = "vllm"`` on a local Ray: two actors, each with its
    own vLLM engine, make every generation call (the engine arguments come from the stage's
    ``[synth.engine_args]`` table); the driver starts no engine. Its output and rejects are
    byte-identical to the same run on the local executor (one engine in this process): the
    actors send the same request batches with the same seeds."""
    ray = pytest.importorskip("ray")
    from fastsynth.run.executor import LocalExecutor
    from fastsynth.run.pipeline import load_config, run
    from fastsynth.run.ray_executor import RayExecutor
    from fastsynth.run.stages import synth as synth_stage

    path, _ = hf_checkpoint
    plan = load_config(overrides={
        "run": {"stages": ["ingest", "score", "dedup", "synth"]},
        "ingest": {"limit": 40, "part_docs": 20},
        "synth": {"backend": "vllm", "model": str(path), "max_docs": 4, "levels": (1, 2),
                  "batch_docs": 2, "max_tokens": 48, "gen_actors": 2,
                  "engine_args": {"max_model_len": 2048, "enforce_eager": True}}})
    with RayExecutor(num_cpus=2, show_progress=False) as ex:
        on_ray = run(plan, tmp_path / "ray", executor=ex, report=False)
    assert not synth_stage._GENERATORS, "the driver started a vLLM engine"
    assert not ray.is_initialized()
    local = run(plan, tmp_path / "local", executor=LocalExecutor(show_progress=False), report=False)
    assert [g.model_name for g in synth_stage._GENERATORS.values()] == [str(path)]
    files = {}
    for rd in (on_ray, local):
        found = sorted([*(rd.root / "synth" / "out").glob("*.parquet"),
                        *(rd.root / "rejects" / "synth").rglob("*.parquet")])
        files[rd] = {str(p.relative_to(rd.root)): p.read_bytes() for p in found}
    assert "synth/out/00000.parquet" in files[local]
    assert files[on_ray] == files[local]
    counts = local.manifest["stages"]["synth"]["counts"]
    assert counts == on_ray.manifest["stages"]["synth"]["counts"] and counts["in"] > 0
