"""The synthesis pipeline end to end: records, provenance, resume, bad input, summary.

Pipeline bookkeeping (resume, retries, rejects, accounting) is tested with ``RuleModel``,
a deterministic stand-in with the Generator interface that follows the prompt formats;
the last tests run the same pipeline with the real embedded SmolLM2 (local backend) and
through the ``openai`` backend against a real ``fastsynth serve`` subprocess.
"""
import functools
import itertools
import json
import random
import re

import pyarrow.parquet as pq
import pytest

import fastsynth as fs
from fastsynth.errors import ConfigError
from fastsynth.llm.base import Completion, Generator
from fastsynth.synth import prompts
from fastsynth.synth.config import SynthConfig
from fastsynth.synth.pipeline import spread, synthesize
from fastsynth.synth.provenance import QA_SCHEMA, REJECT_SCHEMA


class Crash(BaseException):
    """Stands for a killed process: not an Exception, so nothing in the pipeline catches it."""


INSTRUCTION_WORDS = {w for name in ("level1", "level2", "level3", "concepts", "answer")
                     for w in re.findall(r"[a-z]{5,}", prompts.load(name).template.lower())}


class RuleModel(Generator):
    """Follows each prompt's format using words of the prompt's text. ``GARBLE`` in a
    document -> unstructured output; ``FAILDOC`` -> error completions; ``fail_first``:
    every request's first attempt fails; ``crash_after``: raise :class:`Crash` on that call."""

    model_name = "rule-model"

    def __init__(self, fail_first=False, crash_after=None, same_questions=False):
        self.fail_first, self.crash_after, self.same = fail_first, crash_after, same_questions
        self.calls = 0
        self.seen: set = set()

    def _generate(self, chats, params, seeds):
        self.calls += 1
        if self.crash_after is not None and self.calls > self.crash_after:
            raise Crash()
        out = []
        for chat, seed in zip(chats, seeds):
            p = chat[-1]["content"]
            key = (p, seed)
            if "FAILDOC" in p or (self.fail_first and key not in self.seen):
                self.seen.add(key)
                out.append(Completion.failed("HTTP 503", model=self.model_name))
                continue
            rng = random.Random(seed)
            words = sorted(set(re.findall(r"[a-z]{5,}", p.lower())) - INSTRUCTION_WORDS) or ["python"]
            pick = lambda k: " ".join(rng.choice(words) for _ in range(k))  # noqa: E731
            if "GARBLE" in p:
                t = "lorem ipsum " * 5
            elif "main topics of the text" in p:
                t = "".join(f"Topic: {pick(1)}\nConcepts: {', '.join(rng.sample(words, min(6, len(words))))}\n"
                            for _ in range(2))
            elif "Answer the question using" in p:  # same answer for every sample: agreement 1
                rng = random.Random(p)
                t = f"The text says that {pick(6)}. It also notes {pick(3)}."
            elif p.startswith(("Rewrite", "Write a new")):
                t = f"Q: In what way does {pick(7)} change when {pick(3)} is used?"
            elif self.same:
                t = "Q: What is the purpose of this section of the text?"
            else:
                t = "\n".join(f"Q: What is {pick(4)} about?" for _ in range(3))
            out.append(Completion(t, "stop", prompt_tokens=len(p) // 4, completion_tokens=len(t) // 4,
                                  model=self.model_name))
        return out


@functools.lru_cache(maxsize=1)
def _builtin(n=8):
    with fs.corpus.read("builtin:python-docs") as r:
        return [{"id": d["id"], "text": d["text"][:1500]} for d in itertools.islice(r, n)]


def corpus(n=6, extra=()):
    return _builtin()[:n] + list(extra)


FAST = dict(diversity_embeddings=False, batch_docs=3)


def read_table(out, folder, schema):
    m = json.loads((out / "manifest.json").read_text())
    tabs = [pq.read_table(p, schema=schema) for p in sorted((out / folder).glob("*.parquet"))
            if p.stem in m["parts"]]
    import pyarrow as pa
    return pa.concat_tables(tabs) if tabs else schema.empty_table()


def test_spread():
    assert spread(7, ["a", "b", "c"]) == {"a": 2, "b": 2, "c": 3}
    assert sum(spread(100, [str(i) for i in range(7)]).values()) == 100 and spread(3, []) == {}


def test_records_provenance_and_accounting(tmp_path):
    docs = corpus()
    out = tmp_path / "run"
    s = synthesize(docs, out, generator=RuleModel(), config=SynthConfig(evolve_fraction=0.4, answer_samples=2, **FAST))
    qa = read_table(out, "qa", QA_SCHEMA).to_pylist()
    assert s["total"] == len(qa) > 0 and all(s["yield"][f"level{lv}"] > 0 for lv in (1, 2, 3))
    ids = {d["id"] for d in docs}
    for r in qa:
        assert r["level"] in (1, 2, 3) and r["question"].endswith("?") and r["answer"]
        assert r["source_ids"] and all(i.split("#")[0] in ids for i in r["source_ids"])
        assert r["generator_model"] == r["answer_model"] == "rule-model"
        assert prompts.load(f"level{r['level']}").id in r["prompt_version"].split("+")
        if r["level"] > 1:  # the concepts the question was built from carry their own provenance
            assert r["prompt_version"].split("+")[0] in (prompts.load("concepts").id,
                                                         prompts.load("concepts").id + "~keyterms", "keyterms")
        assert r["prompt_version"].endswith("+" + prompts.load("answer").id)
        assert r["seed"] >= 0 and r["answer_seed"] >= 0
        assert r["answer_samples"] == 2 and r["answer_agreement"] == 1.0
        assert 0 < r["gzip_ratio"] < 2 and dict(r["metrics"])["n_words"] >= 2
        if r["level"] == 3:
            assert len(r["source_ids"]) == 2 and 2 <= len(r["concepts"]) <= 3
        if r["level"] == 2:
            assert len(r["source_ids"]) == 1 and 2 <= len(r["concepts"]) <= 3 and r["topics"]
        if r["kind"].startswith("evolved:"):
            assert r["parent_id"] and "+evolve_" in r["prompt_version"]
    assert s["evolved"] == sum(r["kind"].startswith("evolved:") for r in qa) > 0
    assert len({r["id"] for r in qa}) == len(qa)
    rej = read_table(out, "rejects", REJECT_SCHEMA).to_pylist()
    assert sum(sum(v.values()) for v in s["rejections"].values()) == len(rej)
    assert all(r["reason"] for r in rej)
    assert json.loads((out / "summary.json").read_text())["total"] == len(qa)
    md = (out / "summary.md").read_text()  # rendered through fastsynth.report
    assert f"| all | {sum(s['requested_questions'].values())} | {len(qa)} |" in md
    assert "<h2>Diversity</h2>" in (out / "summary.html").read_text()
    loaded = fs.synth.load_records(out).select(["id", "question", "answer"]).to_pylist()
    assert loaded == [{k: r[k] for k in ("id", "question", "answer")} for r in qa]  # public API, same records


def test_resume_after_crash_gives_the_same_records(tmp_path):
    docs = corpus()
    cfg = SynthConfig(**FAST)
    synthesize(docs, tmp_path / "ref", generator=RuleModel(), config=cfg)
    with pytest.raises(Crash):
        synthesize(docs, tmp_path / "run", generator=RuleModel(crash_after=5), config=cfg)
    done = json.loads((tmp_path / "run" / "manifest.json").read_text())["parts"]
    assert "docs-00000" in done and "walks-00000" not in done
    again = RuleModel()
    synthesize(docs, tmp_path / "run", generator=again, config=cfg)
    fresh = RuleModel()
    synthesize(docs, tmp_path / "ref2", generator=fresh, config=cfg)
    assert again.calls < fresh.calls  # finished parts were not regenerated
    cols = ["id", "question", "answer", "seed", "source_ids"]
    a = read_table(tmp_path / "run", "qa", QA_SCHEMA).select(cols).to_pylist()
    b = read_table(tmp_path / "ref", "qa", QA_SCHEMA).select(cols).to_pylist()
    assert a == b and a
    # a finished run re-run does nothing new
    idle = RuleModel()
    s = synthesize(docs, tmp_path / "run", generator=idle, config=cfg)
    assert idle.calls == 0 and s["total"] == len(a)


def test_damaged_finished_part_is_named_and_redone_on_request(tmp_path, capsys):
    from fastsynth.errors import InputError

    docs = corpus()
    cfg = SynthConfig(**FAST)
    synthesize(docs, tmp_path / "run", generator=RuleModel(), config=cfg)
    want = read_table(tmp_path / "run", "qa", QA_SCHEMA).to_pylist()
    part = tmp_path / "run" / "qa" / "docs-00000.parquet"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])  # a torn file
    with pytest.raises(InputError, match=r"docs-00000.*--redo-damaged"):
        synthesize(docs, tmp_path / "run", generator=RuleModel(), config=cfg)
    again = RuleModel()
    synthesize(docs, tmp_path / "run", generator=again, config=cfg, redo_damaged=True)
    assert again.calls > 0
    got = read_table(tmp_path / "run", "qa", QA_SCHEMA).to_pylist()
    assert sorted(r["id"] for r in got) == sorted(r["id"] for r in want)


def test_settings_mismatch_and_overwrite(tmp_path):
    docs = corpus(3)
    synthesize(docs, tmp_path / "r", generator=RuleModel(), config=SynthConfig(**FAST))
    with pytest.raises(ConfigError, match="seed"):
        synthesize(docs, tmp_path / "r", generator=RuleModel(), config=SynthConfig(seed=1, **FAST))
    s = synthesize(docs, tmp_path / "r", generator=RuleModel(), config=SynthConfig(seed=1, **FAST), overwrite=True)
    assert s["total"] > 0


def test_errors_retried_then_recorded_and_malformed_output_counted(tmp_path):
    bad = [{"id": "garbled", "text": "GARBLE " + "some words about functions and classes. " * 5},
           {"id": "failing", "text": "FAILDOC " + "text about modules and packages here. " * 5}]
    gen = RuleModel(fail_first=True)
    s = synthesize(corpus(3, bad), tmp_path / "r", generator=gen, config=SynthConfig(levels=(1, 2), **FAST))
    rej = read_table(tmp_path / "r", "rejects", REJECT_SCHEMA).to_pylist()
    by_doc = {}
    for r in rej:
        for d in r["source_ids"]:
            by_doc.setdefault(d, set()).add((r["stage"], r["reason"]))
    assert by_doc["garbled"] >= {("concepts", "no_topics"), ("question", "no_questions")}
    assert ("question", "generator_error") in by_doc["failing"] and ("concepts", "generator_error") in by_doc["failing"]
    # transient failures (first attempt of every request) were retried, not recorded
    assert not any(r["reason"] == "generator_error" for r in rej if "failing" not in r["source_ids"])
    assert s["total"] > 0 and s["tokens"]["generator_errors"] > 0


def test_near_duplicates_removed_online(tmp_path):
    s = synthesize(corpus(4), tmp_path / "r", generator=RuleModel(same_questions=True),
                   config=SynthConfig(levels=(1,), **FAST))
    assert s["yield"]["level1"] == 1
    assert s["rejections"]["level1"]["dedup:near_duplicate"] == 3


def test_decontamination_against_eval_set(tmp_path):
    docs = corpus(3)
    cfg = SynthConfig(levels=(1,), **FAST)
    synthesize(docs, tmp_path / "a", generator=RuleModel(), config=cfg)
    leaked = read_table(tmp_path / "a", "qa", QA_SCHEMA).column("question").to_pylist()[0]
    s = synthesize(docs, tmp_path / "b", generator=RuleModel(), config=cfg, eval_set=[leaked])
    qs = read_table(tmp_path / "b", "qa", QA_SCHEMA).column("question").to_pylist()
    assert leaked not in qs and s["rejections"]["level1"]["decontam:contaminated"] >= 1


def test_empty_and_unusable_corpus(tmp_path):
    s = synthesize([], tmp_path / "e", generator=RuleModel(), config=SynthConfig(**FAST))
    assert s["total"] == 0 and s["message"].startswith("empty corpus") and s["documents"]["units"] == 0
    s = synthesize([{"id": "x", "text": "short"}], tmp_path / "s", generator=RuleModel(), config=SynthConfig(**FAST))
    assert s["total"] == 0 and "1 skipped" in s["message"] and s["rejections"]["input"] == {"input:too_short": 1}


def test_cli_rejects_bad_levels(capsys):
    from fastsynth.cli import main
    assert main(["synth", "builtin:python-docs", "-o", "unused", "--levels", "1,4"]) == 2
    assert "levels" in capsys.readouterr().err


def test_thin_concept_lists_are_topped_up_with_key_terms(tmp_path):
    from fastsynth.synth.calls import Call, Result
    from fastsynth.synth.documents import Doc
    from fastsynth.synth.level2 import collect_concepts

    doc = Doc("d", "Python lists are mutable sequences. The append method adds one item to the end of a "
                   "list, and the sort method sorts a list in place.")
    res = [Result(Call([], 1, 8, tag=doc), "Topic: Lists\nConcepts: append", "stop", None, "m", 1),
           Result(Call([], 2, 8, tag=Doc("e", doc.text)), "no structure at all", "stop", None, "m", 1)]
    dcs, rej = collect_concepts(res, min_concepts=4)
    assert [r.reason for r in rej] == ["too_few_grounded_concepts", "no_topics"]
    assert dcs[0].source == "model+keyterms" and dcs[0].topics[0][0] == "list"
    assert dcs[0].concepts[0] == "append" and len(dcs[0].concepts) == 4
    assert dcs[1].source == "keyterms" and dcs[1].topics[0][0].startswith("python list are mutable sequence")
    assert len(dcs[1].concepts) == 4
    dcs, _ = collect_concepts(res, min_concepts=0)  # fallback off: the thin list stays thin
    assert [dc.concepts for dc in dcs] == [["append"]]


def test_cli_on_an_empty_corpus(tmp_path, capsys):
    from fastsynth.cli import main
    src = tmp_path / "empty.jsonl"
    src.write_text("")
    assert main(["synth", str(src), "-o", str(tmp_path / "out"), "--no-embeddings"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("empty corpus: no usable documents, no records") and "0 QA pairs" in out
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["total"] == 0
