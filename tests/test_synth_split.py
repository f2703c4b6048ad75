"""The synthesis split for executors (docs/scale.md, "Generation on an actor pool"):
:func:`select_questions` (the ordered filter + evolution) then :func:`answer_selection`
per part, then :func:`synthesize` over what they saved, gives the unsplit synthesis's
records, rejects, concepts and token counts, and the final pass makes no generator call.
Deterministic ``RuleModel`` (tests/test_synth_pipeline.py); the real model on Ray is in
tests/test_run_ray.py."""
import json
import zlib

import pytest

from fastsynth.llm.base import Completion
from fastsynth.synth.config import SynthConfig
from fastsynth.synth.pipeline import answer_selection, select_questions, synthesize
from fastsynth.synth.provenance import QA_SCHEMA, REJECT_SCHEMA
from fastsynth.synth.summary import CONCEPT_SCHEMA
from test_synth_pipeline import FAST, RuleModel, corpus, read_table


class JudgingRuleModel(RuleModel):
    """RuleModel that also scores as a judge: a score of 1-10 taken from the prompt's hash."""

    def _generate(self, chats, params, seeds):
        out = super()._generate(chats, params, seeds)
        for i, chat in enumerate(chats):
            p = chat[-1]["content"]
            if "Reply with the score only" in p:
                out[i] = Completion(f"Score: {1 + zlib.crc32(p.encode()) % 10}", "stop", prompt_tokens=len(p) // 4,
                                    completion_tokens=3, model=self.model_name)
        return out


def _rows(out, folder, schema):
    return json.dumps(read_table(out, folder, schema).to_pylist(), default=str)  # NaN == NaN as text


@pytest.mark.parametrize("settings", [
    dict(evolve_fraction=0.5, answer_samples=2),
    dict(judge_threshold=5.0, decontam_ngram=3, eval_set=True),
])
def test_split_synthesis_equals_unsplit(tmp_path, settings):
    docs = corpus(6)
    cfg = SynthConfig(**{k: v for k, v in settings.items() if k != "eval_set"}, **FAST)
    Model = JudgingRuleModel if cfg.judge_threshold is not None else RuleModel
    eval_set = None
    if settings.get("eval_set"):  # one question a run makes: its record is then contaminated
        synthesize(docs, tmp_path / "probe", generator=Model(), config=cfg)
        eval_set = [read_table(tmp_path / "probe", "qa", QA_SCHEMA).column("question")[0].as_py()]
    whole = synthesize(docs, tmp_path / "whole", generator=Model(), config=cfg, eval_set=eval_set)

    sel, ans = tmp_path / "select", tmp_path / "answers"
    parts = select_questions(docs, sel, generator=Model(), config=cfg, eval_set=eval_set)
    assert any(p.startswith("docs-") for p in parts) and any(p.startswith("walks-") for p in parts)
    ans.mkdir()
    for p in reversed(parts):  # any order, any process: each part reads only its own selection
        answer_selection(sel, p, ans, cfg, Model(), eval_set=eval_set)
    final_gen = Model()
    split = synthesize(docs, tmp_path / "split", generator=final_gen, config=cfg, eval_set=eval_set,
                       pregenerated=[sel, ans])
    assert final_gen.calls == 0  # every call group was found where the split saved it

    for folder, schema in (("qa", QA_SCHEMA), ("rejects", REJECT_SCHEMA), ("concepts", CONCEPT_SCHEMA)):
        assert _rows(tmp_path / "whole", folder, schema) == _rows(tmp_path / "split", folder, schema), folder
    assert whole["total"] > 0 and whole["yield"] == split["yield"]
    assert whole["rejections"] == split["rejections"]
    for k in ("prompt", "completion", "requests", "generator_errors"):
        assert whole["tokens"][k] == split["tokens"][k], k
    reasons = {r for v in whole["rejections"].values() for r in v}
    if cfg.judge_threshold is not None:  # the judge and the decontamination ran in the answer parts
        assert "judge:judge_low_score" in reasons and "decontam:contaminated" in reasons, reasons
    else:
        assert whole["evolved"] == split["evolved"] > 0


def test_answers_made_for_other_questions_are_not_used(tmp_path):
    """A saved answer group whose key does not match (other settings) is ignored: the
    answers are made again, and the output is still the unsplit one."""
    docs = corpus(4)
    cfg = SynthConfig(**FAST)
    sel, ans = tmp_path / "select", tmp_path / "answers"
    parts = select_questions(docs, sel, generator=RuleModel(), config=SynthConfig(**{**FAST, "seed": 1}))
    ans.mkdir()
    for p in parts:
        answer_selection(sel, p, ans, SynthConfig(**{**FAST, "seed": 1}), RuleModel())
    gen = RuleModel()
    synthesize(docs, tmp_path / "split", generator=gen, config=cfg, pregenerated=[sel, ans])
    synthesize(docs, tmp_path / "whole", generator=RuleModel(), config=cfg)
    assert gen.calls > 0
    assert _rows(tmp_path / "whole", "qa", QA_SCHEMA) == _rows(tmp_path / "split", "qa", QA_SCHEMA)


def test_gen_actors_and_gpus_checked_once_naming_the_key():
    from fastsynth.errors import ConfigError
    from fastsynth.run.stages.synth import SynthStageConfig, gen_actors, gen_resources

    with pytest.raises(ConfigError, match=r"^synth\.gen_actors must be an integer >= 1, got 0"):
        SynthStageConfig(gen_actors=0)
    with pytest.raises(ConfigError, match=r"^synth\.gen_gpus must be >= 0"):
        SynthStageConfig(gen_gpus=-1)
    c = SynthStageConfig(gen_actors=3, gen_gpus=1)
    assert gen_actors(c) == 3 and gen_resources(c) == {"num_gpus": 1.0}
    assert gen_resources(SynthStageConfig()) is None and gen_actors(SynthStageConfig()) == 2


def test_synth_command_refuses_zero_actors(tmp_path, capsys):
    from fastsynth.cli import main

    assert main(["synth", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "o"), "--gen-actors", "0"]) == 2
    assert "--gen-actors must be >= 1, got 0" in capsys.readouterr().err


def test_driver_generator_names_the_local_model_before_loading_it():
    # The driver's select/out steps replay what the actors saved; they need the model's name
    # (provenance, call-group keys), which must equal the loaded generator's.
    from fastsynth.run.stages.synth import DriverGenerator, SynthStageConfig
    gen = DriverGenerator(SynthStageConfig())
    name = gen.model_name
    assert not gen.loaded
    assert gen.context_length > 0 and gen.loaded            # any other attribute loads it
    assert gen.model_name == name == gen._real().model_name


def test_ray_executor_gives_the_synth_generator_the_actor_cpus():
    # two generation actors on a 2-core node must not each start a thread per core
    from fastsynth.run.ray_executor import _with_threads
    from fastsynth.run.stages.synth import SynthStageConfig
    assert _with_threads(SynthStageConfig(), 1).threads == 1
    assert _with_threads(SynthStageConfig(threads=3), 1).threads == 3   # set by the user: kept
