"""The Triton attention kernel (fastsynth.kernels.attention) against a float64 reference.

Tolerances as flash-attn tests its kernels: for fp16/bf16 the kernel's largest error against
the float64 reference must be at most 2x (output) and 3x (gradients) the error of PyTorch's own
attention computed in the same dtype; fp32 gets absolute bounds. Outputs and gradients are
filled with NaN before the kernels run (``POISON``), so an element a kernel never writes fails.

On the CPU the kernels run under the Triton interpreter. TRITON_INTERPRET must be set before
triton kernels are defined and another test module may already have imported triton in this
process, so the interpreter cases run in one fresh Python process (this file run as a script),
which prints the measured errors as JSON; the tests below check them case by case. The same
cases run in bf16 on CUDA when a GPU is present.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

# (id, query lengths, key lengths, Hq, Hkv, head dim, dtype, causal). Interpreter blocks are
# 128x64 (forward, dQ) and 64x128 (dK/dV): lengths 1, 37, 130, 200 cross block edges unevenly.
CASES = [
    # GQA 3, lengths 1..256, self-attention
    ("fp32-hd64-g3-causal", [1, 37, 256, 130], None, 3, 1, 64, "float32", True),
    # GQA 8, q != k lengths, an empty query sequence, non-causal
    ("fp32-hd128-g8-cross", [1, 50, 20, 0], [30, 50, 90, 7], 8, 1, 128, "float32", False),
    # bottom-right causal with len_k < len_q (rows that see no key), len_k == 0, len_k > len_q
    ("fp32-hd64-g1-causal-qk", [100, 20, 5, 64], [40, 150, 0, 64], 2, 2, 64, "float32", True),
    ("bf16-hd128-g3-causal", [200, 17, 1], None, 3, 1, 128, "bfloat16", True),
    ("fp16-hd64-g8-causal-qk", [60, 3], [90, 120], 8, 1, 64, "float16", True),
    ("bf16-hd64-g1-full", [256, 129], None, 1, 1, 64, "bfloat16", False),
    ("bf16-hd128-g1-causal-qk", [70, 130], [20, 131], 2, 2, 128, "bfloat16", True),
]
FP32_ABS = {"out": 2e-5, "lse": 2e-5, "dq": 1e-4, "dk": 1e-4, "dv": 1e-4}


def reference(q, k, v, cu_q, cu_k, causal):
    """Attention written from the definition, one sequence and one head at a time, in the
    inputs' dtype (float64 for the truth). Returns out (total_q, Hq, D) and lse (Hq, total_q).
    Rows that see no key: output 0, lse -inf."""
    hq, hkv, d = q.shape[1], k.shape[1], q.shape[2]
    outs, lses = [], []
    for b in range(len(cu_q) - 1):
        qs, qe, ks, ke = cu_q[b], cu_q[b + 1], cu_k[b], cu_k[b + 1]
        i = torch.arange(qe - qs)[:, None]
        j = torch.arange(ke - ks)[None, :]
        hidden = (j > i + (ke - ks) - (qe - qs)) if causal else torch.zeros_like(i + j, dtype=torch.bool)
        heads_o, heads_l = [], []
        for h in range(hq):
            kh, vh = k[ks:ke, h // (hq // hkv)], v[ks:ke, h // (hq // hkv)]
            s = (q[qs:qe, h] @ kh.T) * (1.0 / math.sqrt(d))
            s = s.masked_fill(hidden, float("-inf"))
            p = torch.softmax(s, dim=-1).nan_to_num(0.0)
            heads_o.append(p @ vh)
            heads_l.append(torch.logsumexp(s.double(), dim=-1))
        outs.append(torch.stack(heads_o, dim=1))
        lses.append(torch.stack(heads_l, dim=0))
    return torch.cat(outs), torch.cat(lses, dim=1)


def measure(case, device: str, dtype_name: str | None = None) -> dict:
    """Run the kernel forward and backward on one case; return the max errors (and NaN
    counts) of the kernel and of PyTorch's attention in the same dtype, against float64."""
    from fastsynth.kernels import attention as kern

    cid, lq, lk, hq, hkv, d, dt, causal = case
    lk = lq if lk is None else lk
    dtype = getattr(torch, dtype_name or dt)
    g = torch.Generator().manual_seed(sum(map(ord, cid)))
    cu_q = [0, *torch.tensor(lq).cumsum(0).tolist()]
    cu_k = [0, *torch.tensor(lk).cumsum(0).tolist()]
    q = torch.randn(cu_q[-1], hq, d, generator=g).to(dtype)
    k = torch.randn(cu_k[-1], hkv, d, generator=g).to(dtype)
    v = torch.randn(cu_k[-1], hkv, d, generator=g).to(dtype)
    dout = torch.randn(cu_q[-1], hq, d, generator=g).to(dtype)

    kern.POISON = True
    xs = [t.detach().clone().to(device).requires_grad_() for t in (q, k, v)]
    out, lse = kern.flash_attn_varlen(*xs, torch.tensor(cu_q, dtype=torch.int32, device=device),
                                      torch.tensor(cu_k, dtype=torch.int32, device=device),
                                      max(lq), max(lk), causal=causal, return_lse=True)
    out.backward(dout.to(device))
    got = {"out": out, "lse": lse, "dq": xs[0].grad, "dk": xs[1].grad, "dv": xs[2].grad}
    got = {n: t.detach().cpu().double() for n, t in got.items()}

    refs = {}
    for name, rdtype in (("f64", torch.float64), ("pt", dtype)):
        ys = [t.detach().clone().to(rdtype).requires_grad_() for t in (q, k, v)]
        o, l = reference(*ys, cu_q, cu_k, causal)
        o.backward(dout.to(rdtype))
        refs[name] = {"out": o, "lse": l, "dq": ys[0].grad, "dk": ys[1].grad, "dv": ys[2].grad}
        refs[name] = {n: t.detach().double() for n, t in refs[name].items()}

    result = {}
    for n, t in got.items():
        truth = refs["f64"][n]
        if n == "lse":  # -inf exactly where the reference says no key is visible
            inf_ok = bool(torch.equal(torch.isneginf(t), torch.isneginf(truth)))
            fin = torch.isfinite(truth)
            err = (t[fin] - truth[fin]).abs().max().item() if fin.any() else 0.0
            result[n] = {"err": err, "nan": int(torch.isnan(t).sum()), "inf_ok": inf_ok,
                         "n_neginf": int(torch.isneginf(truth).sum())}
            continue
        result[n] = {"err": (t - truth).abs().max().item() if t.numel() else 0.0,
                     "pt_err": (refs["pt"][n] - truth).abs().max().item() if t.numel() else 0.0,
                     "nan": int(torch.isnan(t).sum()), "shape_ok": t.shape == truth.shape}
    return result


def check(case, result: dict, dtype_name: str) -> None:
    for n, r in result.items():
        assert r["nan"] == 0, f"{n}: {r['nan']} NaN (unwritten or invalid) elements"
        if n == "lse":
            assert r["inf_ok"], "lse must be -inf exactly on rows that see no key"
            assert r["err"] <= (FP32_ABS["lse"] if dtype_name == "float32" else 1e-4), r
            continue
        assert r["shape_ok"]
        if dtype_name == "float32":
            assert r["err"] <= FP32_ABS[n], (n, r)
        else:
            factor = 2.0 if n == "out" else 3.0
            # the small absolute term only matters where PyTorch happens to be exact
            assert r["err"] <= factor * r["pt_err"] + 1e-5, (n, r)


@pytest.fixture(scope="module")
def interpreted() -> dict:
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_float64_reference_under_interpreter(interpreted, case):
    check(case, interpreted[case[0]], case[6])


def test_reference_exercises_rows_without_keys(interpreted):
    # the q != k causal case must contain rows that see no key, or the -inf path goes untested
    assert interpreted["fp32-hd64-g1-causal-qk"]["lse"]["n_neginf"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_float64_reference_on_cuda_bf16(case):
    check(case, measure(case, "cuda", "bfloat16"), "bfloat16")


# ------------------------------------------------------------------ argument checks (CPU)

def _args(**over):
    cu = torch.tensor([0, 3, 5], dtype=torch.int32)
    args = dict(q=torch.zeros(5, 4, 64, dtype=torch.float16), k=torch.zeros(5, 2, 64, dtype=torch.float16),
                v=torch.zeros(5, 2, 64, dtype=torch.float16), cu_seqlens_q=cu, cu_seqlens_k=cu,
                max_seqlen_q=3, max_seqlen_k=3)
    args.update(over)
    return args


@pytest.mark.parametrize("over, name", [
    (dict(k=torch.zeros(5, 3, 64, dtype=torch.float16), v=torch.zeros(5, 3, 64, dtype=torch.float16)), "k"),
    (dict(cu_seqlens_q=torch.tensor([0, 3, 5], dtype=torch.int64)), "cu_seqlens_q"),
    (dict(cu_seqlens_k=torch.tensor([0, 6, 5], dtype=torch.int32)), "cu_seqlens_k"),
    (dict(cu_seqlens_q=torch.tensor([0, 4, 2], dtype=torch.int32)), "cu_seqlens_q"),
    (dict(cu_seqlens_q=torch.tensor([1, 3, 5], dtype=torch.int32)), "cu_seqlens_q"),
    (dict(cu_seqlens_k=torch.tensor([0, 3, 4], dtype=torch.int32)), "cu_seqlens_k"),
    (dict(q=torch.zeros(5, 4, 80, dtype=torch.float16), k=torch.zeros(5, 2, 80, dtype=torch.float16),
          v=torch.zeros(5, 2, 80, dtype=torch.float16)), "head dim"),
    (dict(q=torch.zeros(5, 4, 64, dtype=torch.float64), k=torch.zeros(5, 2, 64, dtype=torch.float64),
          v=torch.zeros(5, 2, 64, dtype=torch.float64)), "dtype"),
    (dict(v=torch.zeros(5, 2, 64, dtype=torch.bfloat16)), "v"),
    (dict(k=torch.zeros(5, 2, 64, dtype=torch.float16, device="meta")), "k"),
    (dict(cu_seqlens_k=torch.tensor([0, 3, 5], dtype=torch.int32, device="meta")), "cu_seqlens_k"),
    (dict(max_seqlen_q=2), "max_seqlen_q"),
    (dict(q=torch.zeros(5, 64, dtype=torch.float16)), "q"),
])
def test_bad_input_raises_value_error_naming_argument(over, name):
    from fastsynth.kernels import attention as kern
    with pytest.raises(ValueError, match=name):
        kern.flash_attn_varlen(**_args(**over))


def test_value_checks_are_redone_when_cu_seqlens_change_in_place():
    from fastsynth.kernels import attention as kern
    a = _args(cu_seqlens_k=torch.tensor([0, 2, 5], dtype=torch.int32))
    call = lambda: kern._validate(a["q"], a["k"], a["v"], a["cu_seqlens_q"], a["cu_seqlens_k"],  # noqa: E731
                                  None, None)
    assert call() == (3, 3)
    assert call() == (3, 3)                   # remembered: same live tensors, same versions
    a["cu_seqlens_k"][1] = 6                  # in place: no longer non-decreasing
    with pytest.raises(ValueError, match="cu_seqlens_k must be non-decreasing"):
        call()
    with torch.inference_mode():              # inference tensors have no version counter
        a = _args(cu_seqlens_k=torch.tensor([0, 2, 5], dtype=torch.int32))
        assert call() == (3, 3) and call() == (3, 3)
        a["cu_seqlens_k"][1] = 6
        with pytest.raises(ValueError, match="cu_seqlens_k must be non-decreasing"):
            call()



# ------------------------------------------------------------------ tiles for another GPU (CPU)

def test_tiles_file_replaces_the_autotuning_candidates_it_names(tmp_path):
    # a fresh process: the file is read when the module is imported
    tiles = {"fwd": {"128": [[128, 128, 8, 3], [64, 64, 4, 3]]}, "dkdv": {"64": [[32, 128, 4, 3]]}}
    path = tmp_path / "tiles.json"
    path.write_text(json.dumps(tiles))
    code = ("import json; from fastsynth.kernels import attention as a; "
            "print(json.dumps({f'{k}.{d}': v for (k, d), v in a._GPU_SHAPES.items()})); "
            "print(json.dumps([[c.kwargs['BLOCK_M'], c.kwargs['BLOCK_N'], c.num_warps, c.num_stages] "
            "for c in a._configs('fwd')]))")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["FASTSYNTH_ATTENTION_TILES"] = str(path)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    shapes, fwd_configs = json.loads(out[0]), json.loads(out[1])
    from fastsynth.kernels import attention as kern
    assert shapes["fwd.128"] == tiles["fwd"]["128"]
    assert shapes["dkdv.64"] == tiles["dkdv"]["64"]
    # entries the file does not name keep the built-in candidates
    assert shapes["dq.128"] == [list(t) for t in kern._BUILTIN_SHAPES[("dq", 128)]]
    assert shapes["fwd.64"] == [list(t) for t in kern._BUILTIN_SHAPES[("fwd", 64)]]
    # the autotuner is offered the union over head dims (each launch prunes to its own)
    assert fwd_configs == [list(t) for t in dict.fromkeys(
        [tuple(t) for t in shapes["fwd.64"] + shapes["fwd.128"]])]


@pytest.mark.parametrize("content, message", [
    ("not json", "cannot read"),
    ("[1, 2]", "expected a JSON object"),
    ('{"bwd": {"128": [[64, 64, 4, 2]]}}', "key 'bwd'"),
    ('{"fwd": {"96": [[64, 64, 4, 2]]}}', "fwd.96"),
    ('{"fwd": {"128": []}}', "fwd.128: expected a non-empty list"),
    ('{"dq": {"64": [[64, 48, 4, 2]]}}', r"dq.64: tile \[64, 48, 4, 2\]"),
    ('{"dq": {"64": [[64, 64, 3, 2]]}}', "dq.64: tile"),
    ('{"dq": {"64": [[64, 64, 4, 0]]}}', "dq.64: tile"),
    ('{"dq": {"64": [[64, 64, 4]]}}', "dq.64: tile"),
])
def test_bad_tiles_file_names_the_file_and_entry(tmp_path, content, message):
    from fastsynth.kernels import attention as kern
    path = tmp_path / "tiles.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        kern.load_tiles(str(path))
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match="cannot read"):
        kern.load_tiles(str(tmp_path / "missing.json"))


if __name__ == "__main__":  # the interpreter run (see the module docstring)
    assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"
    torch.set_num_threads(1)
    print(json.dumps({c[0]: measure(c, "cpu") for c in CASES}))
