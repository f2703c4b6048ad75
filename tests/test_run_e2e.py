"""``fastsynth run`` end to end with the real embedded SmolLM2 (local backend) on a small
corpus: every stage's outputs, the manifest's accounting, resume after SIGKILL at points
inside every stage (to the same final outputs as an uninterrupted run), and the HTML
report in headless Chromium. One finished reference run is shared by the module."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")

CLI = [sys.executable, "-c", "import sys; from fastsynth.cli import main; sys.exit(main())"]
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}

SHORT = [
    ("lists", "Python lists are mutable sequences that hold items in order. The append method adds one "
              "item to the end of a list, and the sort method sorts the list in place. Slicing a list "
              "returns a new list with the selected items. A list can hold items of different types, and "
              "its length is given by the len function. Lists grow and shrink as items are added."),
    ("dicts", "A Python dictionary maps keys to values. Keys must be hashable, so a tuple can be a key but "
              "a list cannot. The get method returns a default value when a key is missing, and the items "
              "method returns the pairs of keys and values. Since Python 3.7 a dictionary keeps its keys in "
              "the order they were inserted. Dictionaries are the basis of attribute lookup."),
]

CONFIG = """
[run]
source = "{source}"
[ingest]
part_docs = 8
[score]
gzip_band = [0.2, 0.7]
[synth]
max_docs = 1
levels = [1, 2]
questions_per_doc = 2
batch_docs = 1
max_tokens = 48
[mix]
synthetic_share = 0.1
[tokenize]
tokenizer = "bpe:384"
[train]
sizes = ["1x32:3e-3", "2x64:2.5e-3"]
budgets = [4096, 8192, 16384]
seq_len = 64
micro_batch_rows = 4
heldout_permille = 200
eval_tokens = 4096
n_bootstrap = 10
fit_start_stride = 8
"""


def fastsynth(*args, timeout=1200):  # a shared 2-core CI host can be 5x slower than a quiet one
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from fastsynth.corpus import read

    root = tmp_path_factory.mktemp("run")
    docs = [{"id": i, "text": t} for i, t in SHORT]
    for k, d in enumerate(read("builtin:python-docs")):
        if k == 22:
            break
        docs.append({"id": d["id"], "text": d["text"]})
    lines = [json.dumps(d) for d in docs]
    lines.insert(5, json.dumps({"id": "copy-of-dicts", "text": SHORT[1][1]}))  # a near-duplicate
    lines.insert(9, "{not json")  # a bad record: rejected at input
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    cfg = root / "run.toml"
    cfg.write_text(CONFIG.format(source=root / "corpus.jsonl"))
    r = fastsynth("run", cfg, "-o", root / "ref")
    assert r.returncode == 0, r.stderr[-3000:]
    return root, cfg, root / "ref", r.stdout


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def outputs(run: Path) -> dict[str, list]:
    """Every record file of a run (stage outputs, scores, clusters, rejects), as rows."""
    found = {}
    for p in sorted(run.rglob("*.parquet")):
        rel = p.relative_to(run).as_posix()
        if rel.startswith(("synth/work/", "tokenize/")):
            continue
        found[rel] = json.dumps(pq.read_table(p).to_pylist(), default=str)  # NaN == NaN as text
    return found


def test_every_stage_accounted_for(setup):
    root, _, ref, stdout = setup
    m = manifest(ref)
    st = m["stages"]
    assert [s for s in m["config"]["stages"] if st[s]["state"] == "pending"] == m["pending_stages"]
    for name in ("ingest", "score", "dedup", "synth", "qa_dedup", "mix", "tokenize", "train", "plan"):
        assert st[name]["state"] == "done", name
    assert m["pending_stages"] == []
    for name in m["pending_stages"]:
        assert st[name]["reason"] and st[name]["counts"] is None
    c = {n: st[n]["counts"] for n in ("ingest", "score", "dedup", "synth", "qa_dedup", "mix")}
    for name, counts in c.items():
        assert counts["in"] == counts["out"] + counts["rejected"], name
        assert sum(counts["rejected_by_reason"].values()) == counts["rejected"], name
    assert c["ingest"] == {**c["ingest"], "in": 26, "out": 25, "rejected": 1}
    assert c["ingest"]["rejected_by_reason"] == {"malformed_json": 1}
    assert c["score"]["in"] == 25 and c["dedup"]["in"] == c["score"]["out"]
    assert c["dedup"]["rejected_by_reason"] == {"near_duplicate": 1}
    # the near-duplicate's reject names the document kept in its place
    (rej,) = [r for p in (ref / "rejects" / "dedup").glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    assert rej["id"] == "copy-of-dicts" and "kept dicts" in rej["detail"]
    # records on disk agree with the manifest
    kept = [r for p in sorted((ref / "dedup" / "out").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert len(kept) == c["dedup"]["out"]
    qa = pq.read_table(ref / "synth" / "out" / "00000.parquet").to_pylist()
    # a 135M model's pairs are often rejected: the test checks the accounting, not the yield
    assert len(qa) == c["synth"]["out"] and c["synth"]["in"] > 0
    for r in qa:
        assert r["level"] in (1, 2) and r["source_ids"] == ["lists"]
        assert r["text"] == f"Question: {r['question']}\nAnswer: {r['answer']}"
    mix = pq.read_table(ref / "mix" / "out" / "00000.parquet").to_pylist()
    assert sum(r["origin"] == "organic" for r in mix) == c["dedup"]["out"]
    assert sum(r["origin"] == "synthetic" and r["repeat"] == 0 for r in mix) == c["mix"]["out"] - c["dedup"]["out"]
    assert c["mix"]["in"] == c["dedup"]["out"] + c["qa_dedup"]["out"]
    assert "synth" in stdout and "train" in stdout
    # the sweep: 2 sizes x 3 budgets, every run trained on the mix and evaluated held out
    assert st["train"]["counts"] == {**st["train"]["counts"], "in": 6, "out": 6, "rejected": 0}
    info = st["train"]["phases"]["sweep"]["global"]["info"]
    runs = [json.loads(x) for x in (ref / info["files"]["runs"]).read_text().splitlines()]
    assert sorted((r["n_layers"], r["hidden"], r["key"]["budget"]) for r in runs) == sorted(
        (n, h, b) for n, h in ((1, 32), (2, 64)) for b in (4096, 8192, 16384))
    assert all(r["eval_tokens"] > 0 and r["eval_loss"] > 0 for r in runs)
    # the sweep trained on the tokenize stage's shards, as they are: their tokenizer, and
    # every one of their documents and tokens in its training or held-out set
    from fastsynth.train.shards import ShardSet
    shards = ShardSet(ref / "tokenize" / "shards")
    assert shards.n_docs == st["tokenize"]["counts"]["out"] and st["tokenize"]["counts"]["in"] == len(mix)
    fit = json.loads((ref / info["files"]["fit"]).read_text())
    d = fit["data"]
    assert d["source"] == "shards" and d["source_path"] == str(ref / "tokenize" / "shards")
    assert d["tokenizer_fingerprint"] == shards.fingerprint and d["vocab_size"] == shards.vocab_size == 384
    assert d["train_tokens"] + d["heldout_tokens"] == shards.n_tokens
    assert d["train_documents"] + d["heldout_documents"] == shards.n_docs
    assert info["unique_tokens"] == d["train_tokens"] > 0 and info["heldout_tokens"] == d["heldout_tokens"] > 0
    assert all(r["key"]["corpus"].startswith("shards:") and r["key"]["tokenizer_fingerprint"] == shards.fingerprint
               for r in runs)
    assert fit["n_points"] == 6 and fit["heldout"]["run"] in {r["name"] for r in runs}
    # every run wrote its training curve
    for r in runs:
        curve = ref / info["curves"] / f"{r['n_layers']}x{r['hidden']}-{r['key']['budget']}" / "metrics.jsonl"
        steps = [json.loads(x) for x in curve.read_text().splitlines()]
        assert [x["step"] for x in steps if "loss" in x][-1] == r["steps"]
    # the plan used the constants fitted on this run
    fitted = st["plan"]["phases"]["plan"]["global"]["info"]["fitted_constants"]
    assert fitted == {k: fit[k] for k in ("E", "A", "B", "alpha", "beta", "r2")}


def test_tokenize_bpe_learns_only_from_the_training_side(setup):
    """The tokenize stage's BPE is trained on the documents the sweep trains on: the
    documents of the sweep's own held-out shard set take no part in its merges."""
    from fastsynth.corpus import read
    from fastsynth.train.shards import ShardSet
    from fastsynth.train.vocab import load_tokenizer

    _, _, ref, _ = setup
    shards = ShardSet(ref / "tokenize" / "shards")
    info = manifest(ref)["stages"]["train"]["phases"]["sweep"]["global"]["info"]
    held = ShardSet(ref / info["data"]["heldout"])  # an absolute path stays as it is
    held_ids = {held.record_id(i) for i in range(held.n_docs)}
    mix = list(read(str(ref / "mix" / "out" / "00000.parquet")))
    assert 0 < len(held_ids) < len(mix)
    train_side = load_tokenizer("bpe:384", (r["text"] for r in mix if str(r["id"]) not in held_ids))
    assert shards.fingerprint == train_side.fingerprint
    # the check can fail: the held-out documents would have changed the merges
    assert load_tokenizer("bpe:384", (r["text"] for r in mix)).fingerprint != shards.fingerprint


def test_report_sections(setup):
    _, _, ref, _ = setup
    md = (ref / "report.md").read_text()
    for heading in ("## Funnel", "## Quality scores", "## Near-duplicates", "## Concept graph (Level 3)",
                    "## Sample questions per level", "## Mix", "## Training, evaluation and the fitted law",
                    "## Fitted law", "## Held-out check", "## Budget plan (scenario seed-5m)"):
        assert heading in md
    assert "R^2 = " in md and "95% bootstrap interval" in md and "predicts its eval loss" in md
    assert "Law fitted to your runs" in (ref / "plan" / "plan.md").read_text()
    for fig in ("funnel.png", "gzip_ratio.png", "dedup_clusters.png", "concept_graph.png",
                "training_curves.png"):
        assert f"(figures/{fig})" in md and (ref / "figures" / fig).stat().st_size > 1000
    for name in manifest(ref)["pending_stages"]:
        assert f"| {name} | pending |" in md


def _render(page: Path) -> tuple[str, str]:
    """Load ``page`` in headless Chromium with a probe that reports, after load, how many
    images decoded and how many errors the page raised; returns (probe line, stderr)."""
    probe = ("<script>window.__errors=[];window.addEventListener('error',e=>window.__errors.push("
             "String(e.message||e.type)),true);window.addEventListener('load',()=>{const im=Array.from("
             "document.images);const ok=im.filter(i=>i.complete&&i.naturalWidth>0).length;"
             "const o=document.createElement('pre');o.id='probe';o.textContent=['PROBE',im.length,ok,"
             "window.__errors.length].join(' ');document.body.appendChild(o);});</script>")
    probed = page.with_name("probed-" + page.name)
    probed.write_text(page.read_text().replace("<head>", "<head>" + probe, 1))
    r = subprocess.run([shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
                        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom",
                        probed.as_uri()], capture_output=True, text=True, timeout=120)
    import re
    found = re.findall(r'<pre id="probe">(PROBE [0-9 ]+)</pre>', r.stdout)
    return (found[0] if found else ""), r.stderr


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="needs Debian's chromium (scripts/test.sh installs it where apt-get is available)")
def test_html_report_renders_in_headless_chromium(setup, tmp_path):
    _, _, ref, _ = setup
    page = tmp_path / "report.html"
    shutil.copy(ref / "report.html", page)  # alone: every figure must be inside the page
    line, err = _render(page)
    _, n_img, n_ok, n_err = line.split()
    assert int(n_img) >= 5 and n_ok == n_img and n_err == "0", line
    assert "CONSOLE" not in err and "Uncaught" not in err
    # the probe can fail: a damaged figure is seen
    broken = tmp_path / "broken.html"
    html = page.read_text()
    k = html.index("data:image/png;base64,") + len("data:image/png;base64,")
    broken.write_text(html[:k] + "AAAA" + html[k + 200:])
    _, n_img, n_ok, _ = _render(broken)[0].split()
    assert int(n_ok) == int(n_img) - 1


# Kill points: (stage, phase or None, parts of that phase already finished) — the run is
# killed as soon as the manifest shows it, i.e. while the next part is being computed
# (("synth", "select", 1): during synth's answer phase, docs/scale.md).
# "runs": inside the sweep, once runs.jsonl lists n finished runs.
KILLS = [("ingest", None, 0), ("score", "out", 1), ("score", "out", 3), ("dedup", "sig", 2),
         ("dedup", "verify", 1), ("synth", None, 0), ("synth", "select", 1), ("qa_dedup", None, 0),
         ("mix", None, 0), ("tokenize", None, 0), ("train", None, 0), ("train", "runs", 2),
         ("plan", None, 0)]


def _reached(run: Path, stage: str, phase: str | None, n: int) -> bool:
    try:
        st = manifest(run)["stages"].get(stage)
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    if st is None or st["state"] not in ("running", "done"):
        return False
    if phase is None:
        return True
    if phase == "runs":  # the sweep's finished runs
        try:
            return len((run / "train" / "global" / "sweep" / "runs.jsonl").read_text().splitlines()) >= n
        except FileNotFoundError:
            return False
    if phase == "work":  # the synthesis run directory's own parts
        try:
            return len(json.loads((run / "synth" / "work" / "manifest.json").read_text())["parts"]) >= n
        except (FileNotFoundError, json.JSONDecodeError):
            return False
    return len(st["phases"].get(phase, {})) >= n


def test_sigkill_inside_every_stage_resumes_to_the_same_outputs(setup):
    root, cfg, ref, _ = setup
    run = root / "killed"
    killed_in = []
    for stage, phase, n in KILLS:
        proc = subprocess.Popen([*CLI, "run", str(cfg), "-o", str(run)], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None and not _reached(run, stage, phase, n):
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_in.append(stage)
        proc.wait(60)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read()[-2000:]
    assert len(set(killed_in)) >= 6 and len(killed_in) >= 9, killed_in  # most kills landed inside their stage
    r = fastsynth("run", cfg, "-o", run)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not list(run.rglob(".*.tmp-*"))
    a, b = outputs(run), outputs(ref)
    assert sorted(a) == sorted(b)
    for rel in b:
        assert a[rel] == b[rel], rel
    ma, mb = manifest(run)["stages"], manifest(ref)["stages"]
    assert {k: v["counts"] for k, v in ma.items()} == {k: v["counts"] for k, v in mb.items()}
    # the sweep resumed to the same runs (each run trains from a fixed seed)
    la = {r["name"] + str(r["n_tokens"]): r["eval_loss"] for r in ma["train"]["phases"]["sweep"]["global"]["info"]["runs"]}
    lb = {r["name"] + str(r["n_tokens"]): r["eval_loss"] for r in mb["train"]["phases"]["sweep"]["global"]["info"]["runs"]}
    assert la.keys() == lb.keys() and all(la[k] == pytest.approx(lb[k], rel=1e-5) for k in lb)
