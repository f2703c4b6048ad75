"""The synthesis pipeline with real models: the embedded SmolLM2-135M-Instruct through the
``local`` backend, and the same pipeline through the ``openai`` backend against a real
``fastsynth serve`` subprocess. A 135M model writes weak questions, so these tests check
that the run completes, accounts for every request and writes well-formed records with
full provenance — not the quality of what it writes."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

import fastsynth as fs  # noqa: E402
from serve_process import running_server  # noqa: E402
from fastsynth.synth import prompts  # noqa: E402
from fastsynth.synth.config import SynthConfig  # noqa: E402
from fastsynth.synth.pipeline import synthesize  # noqa: E402
from fastsynth.synth.provenance import QA_SCHEMA, REJECT_SCHEMA  # noqa: E402

DOCS = [
    {"id": "lists", "text": "Python lists are mutable sequences. The append method adds one item to the end "
                            "of a list, and the sort method sorts a list in place. Slicing a list returns a new "
                            "list with the selected items."},
    {"id": "tuples", "text": "Python tuples are immutable sequences. A tuple is created with commas, usually "
                             "inside parentheses. Tuples support indexing and slicing like lists, but they have "
                             "no append or sort method."},
    {"id": "dicts", "text": "A Python dictionary maps keys to values. Keys must be hashable, so a tuple can be a "
                            "key but a list cannot. The get method returns a default value for a missing key."},
]
# Small limits keep a CPU run short; the pipeline must cope with the truncation they cause.
CFG = dict(questions_per_doc=2, question_max_tokens=40, concept_max_tokens=48, answer_max_tokens=40,
           evolve_max_tokens=32, evolve_fraction=0.5, batch_docs=2, diversity_embeddings=False)


def check_run(out, summary, model_name):
    import pyarrow.parquet as pq

    manifest = json.loads((out / "manifest.json").read_text())
    assert {"input", "docs-00000", "docs-00001", "graph"} <= set(manifest["parts"])
    qa = [r for p in sorted((out / "qa").glob("*.parquet")) for r in pq.read_table(p, schema=QA_SCHEMA).to_pylist()]
    rej = [r for p in sorted((out / "rejects").glob("*.parquet"))
           for r in pq.read_table(p, schema=REJECT_SCHEMA).to_pylist()]
    assert summary["total"] == len(qa)
    assert sum(sum(v.values()) for v in summary["rejections"].values()) == len(rej)
    assert summary["tokens"]["requests"] >= 2 * len(DOCS)  # concepts + Level-1 per document at least
    assert summary["tokens"]["completion"] > 0 and summary["tokens"]["generator_errors"] == 0
    ids = {d["id"] for d in DOCS}
    for r in qa:
        assert r["level"] in (1, 2, 3) and r["question"].endswith("?") and r["answer"].strip()
        assert set(r["source_ids"]) <= ids and len(r["source_ids"]) == (2 if r["level"] == 3 else 1)
        assert r["generator_model"] == r["answer_model"] == model_name
        assert prompts.load(f"level{r['level']}").id in r["prompt_version"].split("+")
        assert r["prompt_version"].endswith("+" + prompts.load("answer").id)
        assert r["seed"] >= 0 and r["answer_seed"] >= 0 and r["id"].startswith(f"L{r['level']}-")
        if r["level"] > 1:
            assert 2 <= len(r["concepts"]) <= 3
    for r in rej:
        assert r["stage"] and r["reason"]
    return qa


def test_local_smollm2_end_to_end(tmp_path):
    gen = fs.llm.generator("local")
    s = synthesize(DOCS, tmp_path / "run", generator=gen, config=SynthConfig(**CFG))
    check_run(tmp_path / "run", s, gen.model_name)
    # the finished run resumes to the same summary without generating anything
    class Counting:
        model_name = gen.model_name
        calls = 0

        def generate(self, *args, **kwargs):
            Counting.calls += 1
            return gen.generate(*args, **kwargs)

    again = synthesize(DOCS, tmp_path / "run", generator=Counting(), config=SynthConfig(**CFG))
    assert Counting.calls == 0 and again["total"] == s["total"] and again["tokens"] == s["tokens"]


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("aiohttp")
    with running_server(batch_size=8) as url:
        yield url


def test_openai_backend_against_fastsynth_serve(tmp_path, server):
    gen = fs.llm.generator("openai", base_url=server, concurrency=8)
    s = synthesize(DOCS, tmp_path / "run", generator=gen, config=SynthConfig(**CFG, judge_threshold=1))
    qa = check_run(tmp_path / "run", s, gen.model_name)
    assert gen.model_name == "SmolLM2-135M-Instruct.Q4_1"
    for r in qa:  # judged: threshold 1 passes every parsed score
        assert 1 <= r["judge_score"] <= 10
