"""Hardening of fastsynth.quality's arguments (issue 15): thresholds, texts and counts are
checked where they enter, with their names, instead of failing later (a string threshold
compared against scores, a str of eval texts read character by character)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fastsynth as fs
from fastsynth.errors import ConfigError
from fastsynth.quality.decontam import Decontaminator
from fastsynth.quality.filter import QualityFilter
from fastsynth.quality.judge import Judge


@pytest.mark.parametrize("change,name", [
    ({"min_words": "50"}, "min_words"), ({"max_symbol_word_ratio": math.nan}, "max_symbol_word_ratio"),
    ({"min_stop_words": True}, "min_stop_words"), ({"gzip_band": ("a", "b")}, "gzip_band"),
    ({"gzip_band": (0.3, math.inf)}, "gzip_band"), ({"mean_word_length": 3.0}, "mean_word_length"),
    ({"max_dup_ngram_char_frac": {"5": 0.1}}, "max_dup_ngram_char_frac"),
    ({"max_top_ngram_char_frac": {2: None}}, "max_top_ngram_char_frac"),
])
def test_filter_thresholds_are_checked(change, name):
    with pytest.raises(ConfigError, match=name):
        QualityFilter().replace(**change)


def test_filter_scores_of_different_lengths_are_named():
    texts = ["a sentence with words. " * 20, "another one here, quite long. " * 20]
    scores = {"gzip_ratio": fs.gzip_ratio(texts), **fs.quality.heuristics(texts)}
    scores["n_words"] = scores["n_words"][:1]
    with pytest.raises(ConfigError, match="lengths differ.*n_words"):
        QualityFilter().apply(scores)


def test_decontaminator_arguments_are_checked():
    with pytest.raises(ConfigError, match="eval_texts must be a list"):
        Decontaminator("the whole benchmark as one string")
    with pytest.raises(ConfigError, match="n must be"):
        Decontaminator(["x"], n="8")
    with pytest.raises(ConfigError, match="min_overlap"):
        Decontaminator(["x"], min_overlap="0.5")
    d = Decontaminator(["one two three four five six seven eight nine"])
    with pytest.raises(ConfigError, match="texts must be a list"):
        d.overlap("one two three four five six seven eight nine")
    with pytest.raises(ConfigError, match=r"texts\[1\]"):
        d.overlap(["fine", None])
    assert d.contaminated(["one two three four five six seven eight nine"]).tolist() == [True]


@pytest.mark.parametrize("kwargs,name", [({"threshold": "6"}, "threshold"),
                                         ({"max_tokens": 0}, "max_tokens"),
                                         ({"batch_size": 2.0}, "batch_size"), ({"seed": -1}, "seed")])
def test_judge_settings_are_checked(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        Judge(generator=None, **kwargs)


def test_threads_out_of_range_is_a_named_error():
    """Was: threads=2**40 failed inside the bindings with a long pybind TypeError."""
    for f in (fs.gzip_ratio, fs.minhash, fs.quality.heuristics):
        with pytest.raises(ConfigError, match="threads"):
            f(["a b c"], threads=2**40)
    assert np.isfinite(fs.gzip_ratio(["a b c"], threads=3)).all()


def test_diversity_measures_refuse_a_single_string():
    from fastsynth.quality.diversity import concept_stats, set_compression_ratio
    with pytest.raises(ConfigError, match="texts must be a list"):
        set_compression_ratio("one text read per character")
    with pytest.raises(ConfigError, match=r"concept_lists\[0\]"):
        concept_stats(["photosynthesis", "chlorophyll"])
    with pytest.raises(ConfigError, match="vocabulary"):
        concept_stats([["a"]], vocabulary="abc")
    got = concept_stats([["a", "b"], ["a"]], vocabulary={"a", "b", "c"})
    assert got["coverage"] == pytest.approx(2 / 3) and got["concepts_used"] == 2.0
