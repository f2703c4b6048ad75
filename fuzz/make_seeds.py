"""Write the seed corpus ``fuzz/corpus/<target>/`` (deterministic; run after changing a
target's input layout: ``.venv/bin/python fuzz/make_seeds.py``).

Each seed is an input in the target's own layout (see :class:`bytesource.ByteSink`),
chosen to reach each branch of the entry point once: every container and mode, texts
that exercise the normalisers and heuristics, JSONL lines of every reject reason, gzip
members, Parquet column types, GGUF metadata of every value type, spill files of every
kind. Files stay small (the largest is a few KiB) so the corpus can live in the repo.
"""
from __future__ import annotations

import gzip
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bytesource import ByteSink  # noqa: E402

TEXTS = [
    "The cat sat on the mat. The cat sat on the mat.",
    "- bullet one\n- bullet two...\n\n# heading\nend!",
    "Ünïcode ΣΊΣΥΦΟΣ ς Жук Ａｂｃ 日本語のテキスト 😀 don't … “quoted”",
    "a" * 70 + " " + "b" * 17 + " word " * 12,
    " \t\n\u00a0\u3000\u2028",
    "",
]
BYTES = [b"plain ascii bytes", b"bad \xff\xfe utf-8 \xe2\x82", b"\xf0\x9f\x98"]


def _text_inputs(level_range: tuple[int, int] | None, threads: bool, forms: list[str] | None,
                 max_len: int) -> list[bytes]:
    seeds = []
    for k, form in enumerate(forms or [None]):
        s = ByteSink()
        if level_range:
            s.int(6 if k % 2 == 0 else level_range[0], *level_range)
        if threads:
            s.int(2, 1, 3)
        if form is not None:
            s.choice(form, forms)
        items = TEXTS[k % 3:k % 3 + 3] + BYTES[k % 2:k % 2 + 1]
        s.int(len(items), 0, 6)
        for t in items:
            s.text_or_bytes(t, max_len)
        seeds.append(s.data)
    return seeds


def gzip_ratio() -> list[bytes]:
    forms = ["list", "tuple", "arrow", "raw_view", "libdeflate"]
    seeds = _text_inputs((-1, 9), True, forms, 200)
    raw = ByteSink().int(6, -1, 9).int(1, 1, 3).choice("raw_view", forms)
    raw.bytes(b"hello world, hello world", 256).int(3, 0, 6)
    for off in (0, 5, 5, 24):
        raw.int(off, -4, 300)
    raw.bool(True).int(3, 0, 7)
    for v in (1, 0, 1):
        raw.int(v, 0, 1)
    seeds.append(raw.data)
    return seeds


def heuristics() -> list[bytes]:
    seeds = []
    for k in range(3):
        s = ByteSink().int(1 + k, 1, 3)
        items = TEXTS[k:k + 3] + [BYTES[1]]
        s.int(len(items), 0, 5)
        for t in items:
            s.text_or_bytes(t, 300)
        for j in range(len(items)):
            s.bool(j == 1)
        seeds.append(s.data)
    return seeds


def minhash() -> list[bytes]:
    seeds = []
    for k, (ngram, kind) in enumerate([(5, "word"), (1, "word"), (3, "char"), (2, "word")]):
        s = ByteSink().int(ngram, 1, 8).choice(kind, ["word", "char"]).int(8, 1, 16)
        s.int(k, 0, 2**32 - 1).int(1 + k % 3, 1, 3)
        items = TEXTS[k:k + 3] + [BYTES[k % 2]]
        s.int(len(items), 0, 4)
        for t in items:
            s.text_or_bytes(t, 240)
        seeds.append(s.data)
    return seeds


JSONL_LINES = [
    b'{"id": "a", "text": "first record", "lang": "en"}',
    b'{"text": "no id: the id is file:line", "score": 0.5}',
    b"",
    b"   ",
    b'{"id": 7, "text": "numeric id", "tags": ["x", {"y": null}]}',
    b'{"text": "escaped \\u00e9 \\ud83d\\ude00 pair"}',
    b'{"text": "lone \\ud800 surrogate"}',
    b'{"id": "x", "meta": "\\udfff", "text": "surrogate in another field"}',
    b'{"text": NaN}',
    b'{"text": "big number", "n": 1e400}',
    b"[1, 2, 3]",
    b'{"body": "wrong field"}',
    b'{"text": null}',
    b'{"text": 5}',
    b"{not json",
    b'{"text": "bad utf-8 \xff"}',
    b"[" * 1200 + b"]" * 1200,
    b'{"text": "crlf line"}\r',
    b'{"text": "last line without newline"}',
]


def corpus_jsonl() -> list[bytes]:
    payload = b"\xef\xbb\xbf" + b"\n".join(JSONL_LINES)
    small = b'{"id": 1, "text": "one"}\n{"id": 2, "text": "two"}\n{"id": 3, "text": "three"}\n'
    seeds = []
    for mode, cut, flip, data in [(0, 0, 0, payload), (1, 40, 0, payload), (1, 9, 0, small),
                                  (2, 30, 0, small), (2, 0, 2 * 20, small), (3, 0, 0, payload),
                                  (4, 25, 0, small), (0, 0, 0, small)]:
        s = ByteSink().choice("text", ["text", "text", "body"]).int(mode, 0, 5)
        s.int(cut, 0, 0xFFFF).int(flip, 0, 0xFFFF).rest(data)
        seeds.append(s.data)
    raw = ByteSink().choice("text", ["text", "text", "body"]).int(5, 0, 5)
    seeds.append(raw.rest(gzip.compress(small, mtime=0) + b"\0\0" + gzip.compress(small, mtime=0)).data)
    return seeds


def corpus_text() -> list[bytes]:
    return [ByteSink().choice(".txt", [".txt", ".md"]).rest(b"\xef\xbb\xbfA document.\n").data,
            ByteSink().choice(".md", [".txt", ".md"]).rest("# Title\n\nÜnïcode 😀\n".encode()).data,
            ByteSink().choice(".txt", [".txt", ".md"]).rest(b"bad \xc3\x28 bytes").data,
            ByteSink().choice(".txt", [".txt", ".md"]).rest(b"").data]


def corpus_parquet() -> list[bytes]:
    seeds = []
    kinds = ["string", "large_string", "dictionary", "binary", "int64", "absent"]
    for k, text_kind in enumerate(kinds):
        s = ByteSink().int(4, 0, 9).choice(text_kind, kinds)
        values = [b"first text", "Ünïcode".encode(), b"bad \xff", b""]
        for j, v in enumerate(values):
            s.int(0 if j == 3 and k % 2 else 1, 0, 5)
            if not (j == 3 and k % 2):
                s.bytes(v, 24)
        if text_kind == "int64":
            for j in range(4):
                s.int(j, -5, 5)
        id_kind = ["int64", "string", "absent"][k % 3]
        s.choice(id_kind, ["int64", "string", "absent"])
        if id_kind == "int64":
            for j in range(4):
                s.int(0 if j == 2 else 1, 0, 3)
                if j != 2:
                    s.int(10 + j, -99, 99)
        elif id_kind == "string":
            for j in range(4):
                s.int(1, 0, 3).bytes(f"id-{j}".encode(), 24)
        extra = ["string", "list", "float", "int", "absent"][k % 5]
        s.choice(extra, ["string", "list", "float", "int", "absent"])
        if extra == "string":
            for j in range(4):
                s.int(1, 0, 3).bytes(b"meta" if j != 1 else b"m\xff", 24)
        elif extra == "list":
            for j in range(4):
                s.int(1, 0, 2).bytes(b"tag" if j != 2 else b"t\xfe", 8)
        elif extra == "float":
            for j in range(4):
                s.int(j, 0, 3)
        elif extra == "int":
            for j in range(4):
                s.int(j, 0, 9)
        s.int(2, 1, 4).int(1 if k == 5 else 2, 0, 3)
        seeds.append(s.data)
    return seeds


def _gguf_files() -> list[bytes]:
    import gguf

    out = []
    tmp = Path(tempfile.mkdtemp())
    try:
        for k in range(2):
            path = tmp / f"m{k}.gguf"
            w = gguf.GGUFWriter(str(path), "llama")
            w.add_block_count(1)
            w.add_embedding_length(32)
            w.add_head_count(2)
            w.add_head_count_kv(1)
            w.add_feed_forward_length(64)
            w.add_context_length(128)
            w.add_layer_norm_rms_eps(1e-5)
            w.add_rope_freq_base(10000.0)
            w.add_uint8("fuzz.u8", 7)
            w.add_int16("fuzz.i16", -3)
            w.add_bool("fuzz.flag", True)
            w.add_float64("fuzz.f64", 0.25)
            w.add_int64("fuzz.i64", -(2**40))
            w.add_array("fuzz.ints", [1, 2, 3])
            w.add_array("fuzz.floats", [0.5, 1.5])
            w.add_token_list(["<s>", "</s>", "a", "b", "ab"])
            w.add_name("fuzz-seed")
            if k == 0:
                w.add_tensor("token_embd.weight", np.arange(5 * 32, dtype=np.float32).reshape(5, 32))
                w.add_tensor("output_norm.weight", np.ones(32, dtype=np.float16))
            else:
                from gguf.quants import quantize

                q = quantize(np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32),
                             gguf.GGMLQuantizationType.Q8_0)
                w.add_tensor("blk.0.ffn_down.weight", q, raw_shape=q.shape,
                             raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()
            out.append(path.read_bytes())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def gguf() -> list[bytes]:
    return [ByteSink().rest(b).data for b in _gguf_files()] + [ByteSink().rest(b"GGUF\x03\x00\x00\x00").data]


def spill() -> list[bytes]:
    from fastsynth.dedup import spill as sp

    seeds = []
    tmp = Path(tempfile.mkdtemp())
    try:
        p = sp.SpillParams(num_perm=4, seed=1)
        sp.write_signatures(tmp / "s", np.arange(12, dtype=np.uint32).reshape(3, 4), p)
        pb = sp.SpillParams(num_perm=4, seed=1, bands=2, rows=2)
        w = sp.SpillWriter(tmp / "b", b"BAND", pb, band=1)
        w.append(np.array([(5, 0), (9, 2)], dtype=sp.BAND_DTYPE), 2)
        w.close()
        ps = sp.SpillParams(num_perm=4, seed=1, ngram=3, shingle="char")
        w = sp.SpillWriter(tmp / "e", b"SETS", ps)
        w.append(np.array([3, 8, 1], dtype=np.uint64), 0)
        w.append(np.array([0, 2, 3], dtype=np.int64), 2)
        w.extra = 3
        w.close()
        for name in ("s", "b", "e"):
            seeds.append(ByteSink().int(1, 0, 3).rest((tmp / name).read_bytes()).data)
        seeds.append(ByteSink().int(0, 0, 3).rest((tmp / "s").read_bytes()).data)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return seeds


def pack() -> list[bytes]:
    methods = ["best-fit", "first-fit", "concat"]
    seeds = []
    for k, method in enumerate(methods):
        s = ByteSink().choice(method, methods).int(1, 0, 7).int(16, 2, 4096)
        lengths = [5, 0, 16, 17, 33, 1, 15, 8, 8, 40]
        s.int(len(lengths), 0, 64)
        for n in lengths:
            s.int(6, 0, 6).int(n, 0, 20000)
        seeds.append(s.data)
    seeds.append(ByteSink().choice("best-fit", methods).int(0, 0, 7).int(8, 2, 4096)
                 .int(2, 0, 64).int(6, 0, 6).int(3, 0, 20000).int(6, 0, 6).int(9, 0, 20000)
                 .int(0, 0, 3).int(1, 0, 1).int(5, 1, 2**62).data)
    return seeds


def shards() -> list[bytes]:
    from fastsynth.train import shards as sh

    seeds = []
    tmp = Path(tempfile.mkdtemp())
    try:
        for k, vocab in enumerate((300, 70000)):
            w = sh.ShardWriter(tmp / str(k), vocab_size=vocab, tokenizer_json="{}",
                               fingerprint="00" * 32, separator="</s>", separator_id=0)
            w.add([np.array([1, 2, 3, 0]), np.array([], dtype=np.int64), np.array([vocab - 1, 0])],
                  ["doc-a", "", "Ünïcode-id"])
            w.close()
            idx = next((tmp / str(k)).glob("*.idx"))
            s = ByteSink().int(1, 0, 3).bytes(idx.read_bytes(), 4096)
            seeds.append(s.rest(idx.with_suffix(".bin").read_bytes()).data)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return seeds


def server_request() -> list[bytes]:
    kinds = ["chat", "completion"]
    chat = [
        {"model": "fuzz-model", "messages": [{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "Hi \u00e9"}],
         "max_completion_tokens": 5, "temperature": 0.7, "top_p": 0.9, "top_k": 20,
         "stop": ["\n", "END"], "seed": 3, "stream": True,
         "stream_options": {"include_usage": True}, "user": "u1"},
        {"messages": [{"role": "developer", "content": [{"type": "text", "text": "a"},
                                                         {"type": "text", "text": "b"}]}],
         "max_tokens": 1.0, "n": 1, "presence_penalty": 0, "logit_bias": {},
         "tool_choice": "none", "response_format": {"type": "text"}},
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": True, "temperature": 3,
         "stop": 5, "seed": 2**64, "logprobs": True},
        {"messages": [], "top_p": None},
    ]
    completion = [
        {"model": "fuzz-model", "prompt": "Once upon", "max_tokens": 4, "echo": False,
         "best_of": 1, "suffix": ""},
        {"prompt": [[1, 2, 3], "text prompt", [999]], "stop": "."},
        {"prompt": [1, 2, 1000], "temperature": -1},
        {"prompt": ["a", "b", "c", "d", "e", "f"]},
    ]
    seeds = [ByteSink().choice("chat", kinds).rest(json.dumps(b).encode()).data for b in chat]
    seeds += [ByteSink().choice("completion", kinds).rest(json.dumps(b).encode()).data
              for b in completion]
    seeds.append(ByteSink().choice("chat", kinds).rest(b'{"messages": [{"role": "user", '
                                                        b'"content": "\\ud800"}]}').data)
    seeds.append(ByteSink().choice("completion", kinds).rest(b"\xff not json").data)
    return seeds


def lsh() -> list[bytes]:
    seeds = []
    s = ByteSink().int(0, 0, 3).int(3, 0, 12).int(4, 1, 16)  # band_keys: 3 rows of 4
    for v in [0, 1, 2, 3, 0, 1, 2, 3, 1, 1, 1, 1]:
        s.int(v, 0, 3)
    seeds.append(s.int(2, 0, 9).int(2, 0, 9).int(2, 1, 3).data)
    s = ByteSink().int(1, 0, 3).int(6, 0, 24)  # bucket_pairs: keys, then ids
    for k in [0, 0, 0, 1, 1, 2]:
        s.int(k, 0, 3)
    for i in [1, 4, 7, 2, 3, 9]:
        s.int(i, 0, 15)
    seeds.append(s.int(2, 0, 6).int(1, 0, 3).data)
    s = ByteSink().int(2, 0, 3).int(3, 0, 6).int(1, 0, 3)  # pair_jaccard: 3 sorted sets
    for vals in ([1, 2, 3], [2, 3, 4], []):
        s.int(len(vals), 0, 6)
        for v in vals:
            s.int(v, 0, 9)
    s.int(1, 0, 7).int(3, 0, 8)
    for u in [0, 0, 2]:
        s.int(u, -1, 3)
    for v in [1, 2, 2]:
        s.int(v, -1, 3)
    seeds.append(s.int(2, 1, 3).data)
    s = ByteSink().int(3, 0, 3).int(6, 0, 12).int(1, 0, 5).int(3, 0, 10)  # union_pairs
    for u in [5, 3, 1]:
        s.int(u, 0, 5)
    for v in [3, 1, 4]:
        s.int(v, 0, 5)
    seeds.append(s.bool(False).data)
    return seeds


def quant_matmul() -> list[bytes]:
    seeds = []
    for fmt, out, nblk, batch in [("q4_1", 3, 2, 1), ("q8_0", 7, 1, 6), ("q4_1", 5, 3, 13)]:
        s = ByteSink().choice(fmt, ["q4_1", "q8_0"]).int(out, 1, 40).int(nblk, 1, 6)
        s.int(batch, 1, 20).int(1, 0, 7).bool(True).int(2, 1, 3)
        size = out * nblk * (20 if fmt == "q4_1" else 34)
        s.bytes(bytes((i * 37 + 11) % 256 for i in range(size)), size)
        n = 4 * batch * 32 * nblk
        s.bytes(bytes((i * 91 + 5) % 256 for i in range(n)), n)
        seeds.append(s.data)
    seeds.append(ByteSink().choice("q8_0", ["q4_1", "q8_0"]).int(2, 1, 40).int(1, 1, 6)
                 .int(2, 1, 20).int(0, 0, 7).int(2, 0, 2).int(5, 0, 63).data)
    return seeds


TARGETS = {
    "gzip_ratio": gzip_ratio, "heuristics": heuristics, "minhash": minhash,
    "corpus_jsonl": corpus_jsonl, "corpus_text": corpus_text, "corpus_parquet": corpus_parquet,
    "gguf": gguf, "spill": spill, "pack": pack, "shards": shards,
    "server_request": server_request, "lsh": lsh, "quant_matmul": quant_matmul,
}


def write(targets: list[str]) -> None:
    for name in targets:
        folder = HERE / "corpus" / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("seed-*"):
            old.unlink()
        for k, data in enumerate(TARGETS[name]()):
            (folder / f"seed-{k:02d}").write_bytes(data)


if __name__ == "__main__":
    write(sys.argv[1:] or list(TARGETS))
