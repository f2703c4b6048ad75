"""``fastsynth dedup``: end to end on a JSONL corpus, summary, clusters table, errors."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from fastsynth.cli import main
from fastsynth.dedup import dedup
from fastsynth.dedup.synthetic import make_near_duplicates


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    data = make_near_duplicates(60, seed=3)
    path = tmp_path_factory.mktemp("corpus") / "in.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for k, t in enumerate(data.texts):
            f.write(json.dumps({"id": f"d{k}", "text": t, "q": (k * 7) % 11, "extra": k}) + "\n")
    return data, path


def test_cli_writes_kept_records_summary_and_clusters(corpus, tmp_path, capsys):
    data, path = corpus
    out, clusters, summ = tmp_path / "out.jsonl", tmp_path / "cl.parquet", tmp_path / "s.json"
    assert main(["dedup", str(path), "-o", str(out), "--clusters", str(clusters),
                 "--summary-json", str(summ)]) == 0
    ref = dedup(data.texts)
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in kept] == [f"d{k}" for k in np.flatnonzero(ref.keep)]
    assert all("extra" in r for r in kept)  # other fields pass through
    s = json.loads(summ.read_text())
    assert s["documents"] == len(data.texts) and s["duplicates_removed"] == ref.n_removed > 0
    assert sum(int(size) * c for size, c in s["cluster_size_histogram"].items()) == len(data.texts)
    table = pq.read_table(clusters).to_pydict()
    assert table["keep"] == ref.keep.tolist()
    printed = capsys.readouterr().out
    assert f"removed {ref.n_removed:,} near-duplicates" in printed and "cluster size" in printed


def test_cli_keep_score_and_memory_budget(corpus, tmp_path):
    data, path = corpus
    out = tmp_path / "out.parquet"
    assert main(["dedup", str(path), "-o", str(out), "--keep", "score", "--score-field", "q",
                 "--memory-budget-mb", "0.01", "--threads", "1"]) == 0
    ref = dedup(data.texts, keep="score", scores=np.array([(k * 7) % 11 for k in range(len(data.texts))], float))
    assert pq.read_table(out).column("id").to_pylist() == [f"d{k}" for k in np.flatnonzero(ref.keep)]


@pytest.mark.parametrize("argv,needle", [(["--threshold", "1.5"], "threshold"), (["--num-perm", "0"], "num_perm"),
                                         (["--ngram", "0"], "ngram"), (["--keep", "score"], "--score-field")])
def test_cli_bad_options_exit_2_with_one_line(corpus, tmp_path, capsys, argv, needle):
    _, path = corpus
    assert main(["dedup", str(path), "-o", str(tmp_path / "o.jsonl"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_cli_missing_input(tmp_path, capsys):
    assert main(["dedup", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_cli_on_error_skip_writes_rejects_and_counts_them(tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    good = [json.dumps({"id": f"g{k}", "text": f"document {k} " + "word " * 20}) for k in range(4)]
    path.write_text("\n".join(good[:2] + ["{not json", '{"id": "n", "text": 5}'] + good[2:]) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["dedup", str(path), "-o", str(out), "--on-error", "skip",
                 "--summary-json", str(tmp_path / "s.json")]) == 0
    rejects = [json.loads(x) for x in (tmp_path / "out.jsonl.rejects.jsonl").read_text().splitlines()]
    assert sorted(r["reason"] for r in rejects) == ["malformed_json", "non_string_text"]
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["input_records"] == 6 and s["rejected_at_input"] == 2
    assert s["input_records"] == s["kept"] + s["duplicates_removed"] + s["rejected_at_input"]
    assert "records in 6 = kept" in capsys.readouterr().out


def test_cli_keep_score_with_unknown_field_names_it(corpus, tmp_path, capsys):
    _, path = corpus
    assert main(["dedup", str(path), "-o", str(tmp_path / "o.jsonl"), "--keep", "score",
                 "--score-field", "qq"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'qq'" in err[0] and "no such field" in err[0]
    assert not (tmp_path / "o.jsonl").exists()
