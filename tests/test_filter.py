"""fastsynth.quality.QualityFilter: rules, reasons and their accounting."""
import numpy as np
import pytest

import fastsynth as fs
from fastsynth.errors import ConfigError
from fastsynth.quality import QualityFilter

GOOD = ("The committee met on Tuesday to review the budget for the coming year. Members "
        "discussed how the new research programme would be funded, and which projects "
        "should be postponed. After a long debate, they agreed that the library renovation "
        "would go ahead in spring, while the sports hall would wait until the following "
        "autumn. The chair thanked everyone for their patience and closed the meeting.\n\n"
        "Later that week, the treasurer published a note explaining the decision. Costs for "
        "heating had risen sharply over the winter, she wrote, and the reserve fund was lower "
        "than expected after repairs to the roof of the east wing. Borrowing was possible but "
        "expensive; postponing one project seemed wiser than taking on debt. Several members "
        "replied that the sports clubs had waited for years already, and asked whether a "
        "smaller refurbishment could begin sooner. The committee promised to consider a phased "
        "plan at its next meeting, once contractors had submitted revised estimates.")


# A ~1 KB paragraph of clean prose compresses to ~0.55 at zlib level 6 (short texts
# carry relatively more header and literal cost), above the seed's 0.3-0.5 band, which
# suits documents of several KB. These tests widen the band to isolate the other rules.
PROSE = QualityFilter(gzip_band=(0.3, 0.6))


def score(texts):
    return {"gzip_ratio": fs.gzip_ratio(texts), **fs.quality.heuristics(texts)}


def test_clean_prose_is_kept_and_junk_is_rejected_with_reasons():
    texts = [GOOD, "buy now " * 100, "short text.", "#" * 10 + " word" * 60]
    result = PROSE.apply(score(texts))
    assert result.keep.tolist() == [True, False, False, False]
    reasons = result.reasons()
    assert reasons[0] == []
    assert "top_2gram" in reasons[1] and "gzip_ratio_band" in reasons[1]
    assert "word_count" in reasons[2]
    assert "symbol_word_ratio" in reasons[3] or "dup_5gram" in reasons[3]


def test_first_reason_counts_add_up_to_rejections():
    texts = [GOOD, "", "a " * 80, "x", GOOD.upper(), "1 2 3 " * 40]
    result = PROSE.apply(score(texts))
    first = result.first_reason()
    assert result.keep.any() and not result.keep.all()
    assert ((first == "") == result.keep).all()
    rejected = int((~result.keep).sum())
    assert sum(1 for r in first if r) == rejected
    assert result.reasons_arrow().to_pylist() == result.reasons()
    for doc_reasons, f in zip(result.reasons(), first):
        assert (f == "") == (doc_reasons == []) and (not doc_reasons or doc_reasons[0] == f)


def test_nan_fails_its_rule():
    result = QualityFilter().apply(score([""]))
    assert not result.keep[0]
    assert "gzip_ratio_band" in result.reasons()[0] and "mean_word_length" in result.reasons()[0]


def test_thresholds_are_configurable_and_disableable():
    s = score([GOOD])
    assert QualityFilter(gzip_band=(0.0, 0.1)).apply(s).reasons()[0] == ["gzip_ratio_band"]
    assert QualityFilter(gzip_band=None, min_words=1000).apply(s).reasons()[0] == ["word_count"]
    loose = QualityFilter().replace(min_words=None, max_words=None)
    assert "word_count" not in [r.name for r in loose.rules()]
    assert PROSE.replace(max_top_ngram_char_frac={2: 0.0}).apply(s).reasons()[0] == ["top_2gram"]
    assert QualityFilter().apply(s).reasons()[0] == ["gzip_ratio_band"]


def test_bad_configuration():
    with pytest.raises(ConfigError, match="gzip_band"):
        QualityFilter(gzip_band=(0.6, 0.2))
    with pytest.raises(ConfigError, match="no_such_rule"):
        QualityFilter().replace(no_such_rule=1)
    with pytest.raises(ConfigError, match="gzip_ratio"):
        QualityFilter().apply(fs.quality.heuristics([GOOD]))


def test_rule_descriptions():
    names = {r.name: r.describe() for r in QualityFilter().rules()}
    assert names["gzip_ratio_band"] == "0.3 <= gzip_ratio <= 0.5"
    assert names["stop_words"] == "n_stop_words >= 2"
    assert names["dup_10gram"] == "dup_10gram_char_frac <= 0.1"
    assert len(np.unique(list(names))) == len(names)
