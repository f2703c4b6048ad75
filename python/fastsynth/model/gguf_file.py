"""Read Llama-architecture GGUF files (llama.cpp's format) into fastsynth weights.

Quantised tensors (Q4_1, Q8_0, ...) are dequantised to float32 by the ``gguf`` package.
llama.cpp's converter permutes the rows of ``attn_q``/``attn_k`` from HF's rotate-half RoPE
layout to the interleaved one; :func:`unpermute_qk` undoes it (without it, generation is noise).
"""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastsynth.errors import ConfigError, DependencyError, InputError
from fastsynth.model.config import LlamaConfig, RopeScaling

SUPPORTED_ARCHITECTURES = ("llama",)


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation. ``w``: ``(n_heads*head_dim, d_in)``.

    Per head, GGUF rows are ordered (pair index, half) = interleaved; HF rows are
    (half, pair index) = rotate-half.
    """
    rows, d_in = w.shape
    hd = rows // n_heads
    return w.reshape(n_heads, hd // 2, 2, d_in).swapaxes(1, 2).reshape(rows, d_in)


class GGUFFile:
    """Metadata and tensor table of a GGUF (v2/v3) file; tensor bytes are memory-mapped.

    A small header parser of our own: ``gguf.GGUFReader`` builds a numpy object per vocabulary
    string (~5 s and ~250 MB for SmolLM2's 98k tokens and merges); this takes ~0.2 s.
    ``fields``: key -> Python value (arrays of numbers as numpy arrays, of strings as lists).
    ``tensors``: name -> :class:`TensorInfo`. Dequantisation uses the ``gguf`` package.
    """

    def __init__(self, path: str | os.PathLike):
        try:
            import gguf
        except ImportError as e:  # pragma: no cover - gguf is in the llm extra
            raise DependencyError("gguf", "llm", "loading GGUF models") from e
        self._gguf = gguf
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise InputError("model file not found", source=self.path)
        try:
            self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
            self._parse()
        except InputError:
            raise
        except Exception as e:  # struct errors, bad UTF-8, absurd sizes
            raise InputError(f"not a readable GGUF file (corrupted or truncated?): {e}",
                             source=self.path) from e

    # -- header parsing ---------------------------------------------------------------
    def _take(self, n: int) -> bytes:
        if n < 0 or self._pos + n > self._size:
            raise InputError(f"file ends inside the header (needs {n} bytes at offset "
                             f"{self._pos}; truncated?)", source=self.path)
        b = self._buf[self._pos:self._pos + n]
        self._pos += n
        return b

    def _scalar(self, code: str) -> Any:
        return struct.unpack("<" + code, self._take(struct.calcsize(code)))[0]

    def _string(self) -> str:
        return bytes(self._take(self._scalar("Q"))).decode("utf-8")

    def _value(self, vtype: int) -> Any:
        if vtype == 8:
            return self._string()
        if vtype == 9:
            item, count = self._scalar("I"), self._scalar("Q")
            if item == 8:
                return [self._string() for _ in range(count)]
            if item in _NUMPY:
                dt = np.dtype(_NUMPY[item])
                return np.frombuffer(self._take(count * dt.itemsize), dtype=dt).copy()
            return [self._value(item) for _ in range(count)]
        if vtype not in _SCALARS:
            raise ValueError(f"unknown metadata value type {vtype}")
        v = self._scalar(_SCALARS[vtype])
        return bool(v) if vtype == 7 else v

    def _parse(self) -> None:
        self._buf, self._size, self._pos = memoryview(self._mm), self._mm.shape[0], 0
        if bytes(self._take(4)) != b"GGUF":
            raise InputError("not a GGUF file (bad magic bytes)", source=self.path)
        version = self._scalar("I")
        if version not in (2, 3):
            raise InputError(f"unsupported GGUF version {version}", source=self.path)
        n_tensors, n_kv = self._scalar("Q"), self._scalar("Q")
        self.fields: dict[str, Any] = {}
        for _ in range(n_kv):
            key = self._string()
            self.fields[key] = self._value(self._scalar("I"))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            dims = [self._scalar("Q") for _ in range(self._scalar("I"))]
            infos.append((name, dims, self._scalar("I"), self._scalar("Q")))
        align = int(self.fields.get("general.alignment", 32))
        data_start = -(-self._pos // align) * align
        self.tensors: dict[str, TensorInfo] = {}
        for name, dims, qtype, offset in infos:
            try:
                qt = self._gguf.GGMLQuantizationType(qtype)
            except ValueError:
                raise InputError(f"tensor {name} has unknown type code {qtype}",
                                 source=self.path) from None
            block, type_size = self._gguf.GGML_QUANT_SIZES[qt]
            n = math.prod(dims)
            if not dims or n < 1 or n % block or (len(dims) > 1 and dims[0] % block):
                raise InputError(f"tensor {name} has shape {tuple(reversed(dims))}, which "
                                 f"{qt.name} blocks of {block} cannot hold", source=self.path)
            info = TensorInfo(name, tuple(reversed(dims)), qt, data_start + offset,
                              n // block * type_size)
            # Checked against the file before anything is read or allocated: a damaged
            # table cannot make the loader allocate more than the file holds.
            if info.offset + info.n_bytes > self._size:
                raise InputError(f"tensor {name} extends past the end of the file "
                                 f"(truncated?)", source=self.path)
            self.tensors[name] = info
        del self._buf

    # -- tensor access ------------------------------------------------------------------
    def array(self, name: str) -> np.ndarray:
        """Tensor ``name`` as float32, shape in row-major order (e.g. ``(out, in)``)."""
        t = self.tensors[name]
        raw = self._mm[t.offset:t.offset + t.n_bytes]
        Q = self._gguf.GGMLQuantizationType
        if t.qtype == Q.F32:
            arr = raw.view(np.float32).copy()
        elif t.qtype == Q.F16:
            arr = raw.view(np.float16).astype(np.float32)
        else:
            try:
                rows = t.n_bytes // t.shape[0] if len(t.shape) > 1 else t.n_bytes
                arr = self._gguf.quants.dequantize(np.asarray(raw).reshape(-1, rows), t.qtype)
            except NotImplementedError as e:
                raise ConfigError(f"{self.path}: tensor {name} uses unsupported quantisation "
                                  f"{t.qtype.name}") from e
            arr = arr.astype(np.float32, copy=False)
        return arr.reshape(t.shape)

    def blocks(self, name: str) -> np.ndarray:
        """Tensor ``name``'s stored bytes, a new uint8 array ``(rows, bytes_per_row)`` (``rows`` =
        the first row-major dimension). For block formats each row is ``in_features /
        block_size`` whole blocks, so rows can be reordered. Read with a plain file read, not
        through the memory map: mapped pages count in the process's resident memory while the
        file is open, and the caller keeps these bytes anyway."""
        t = self.tensors[name]
        rows = t.shape[0] if len(t.shape) > 1 else 1
        out = np.empty(t.n_bytes, dtype=np.uint8)
        with open(self.path, "rb") as f:
            f.seek(t.offset)
            if f.readinto(memoryview(out)) != t.n_bytes:
                raise InputError(f"file ends inside tensor {name} (truncated?)", source=self.path)
        return out.reshape(rows, -1)


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    qtype: Any
    offset: int
    n_bytes: int


# GGUF metadata value types (spec): scalar struct codes and numpy dtypes for arrays.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?",
          10: "<u8", 11: "<i8", 12: "<f8"}


def open_gguf(path: str | os.PathLike) -> GGUFFile:
    return GGUFFile(path)


def field_value(reader: GGUFFile, key: str, default: Any = None) -> Any:
    return reader.fields.get(key, default)


def config_from_gguf(reader: Any, path: str = "") -> LlamaConfig:
    """The :class:`LlamaConfig` that the GGUF metadata describes."""
    arch = field_value(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ConfigError(f"{path}: unsupported model architecture {arch!r} "
                          f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})")

    def need(key: str) -> Any:
        v = field_value(reader, f"{arch}.{key}")
        if v is None:
            raise InputError(f"GGUF metadata lacks {arch}.{key}", source=path)
        return v

    def integer(key: str, v: Any) -> int | None:
        # Metadata of the wrong type (a string, an array, a float) is a damaged file.
        if v is None:
            return None
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise InputError(f"GGUF metadata {key} must be an integer, got {v!r:.60}", source=path)
        return int(v)

    def number(key: str, v: Any) -> float:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise InputError(f"GGUF metadata {key} must be a number, got {v!r:.60}", source=path)
        return float(v)

    hidden = integer(f"{arch}.embedding_length", need("embedding_length"))
    n_heads = integer(f"{arch}.attention.head_count", need("attention.head_count"))
    head_dim = integer(f"{arch}.attention.key_length",
                       field_value(reader, f"{arch}.attention.key_length")) \
        or integer(f"{arch}.rope.dimension_count",
                   field_value(reader, f"{arch}.rope.dimension_count")) \
        or (hidden // n_heads if n_heads else 0)
    tokens = field_value(reader, "tokenizer.ggml.tokens")
    vocab = integer(f"{arch}.vocab_size", field_value(reader, f"{arch}.vocab_size")) \
        or (len(tokens) if isinstance(tokens, list) and tokens else None)
    names = set(reader.tensors)
    if vocab is None and "token_embd.weight" in names:
        vocab = reader.tensors["token_embd.weight"].shape[0]
    if vocab is None:
        raise InputError("GGUF metadata gives no vocabulary size", source=path)
    try:
        cfg = LlamaConfig(
            n_layers=integer(f"{arch}.block_count", need("block_count")), hidden=hidden,
            n_heads=n_heads,
            n_kv_heads=integer(f"{arch}.attention.head_count_kv",
                               field_value(reader, f"{arch}.attention.head_count_kv", n_heads)),
            head_dim=head_dim, ffn=integer(f"{arch}.feed_forward_length",
                                           need("feed_forward_length")), vocab=int(vocab),
            rope_theta=number(f"{arch}.rope.freq_base",
                              field_value(reader, f"{arch}.rope.freq_base", 10000.0)),
            max_seq_len=integer(f"{arch}.context_length",
                                field_value(reader, f"{arch}.context_length", 2048)),
            tied="output.weight" not in names,
            norm_eps=number(f"{arch}.attention.layer_norm_rms_epsilon", field_value(
                reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
            bos_token_id=integer("tokenizer.ggml.bos_token_id",
                                 field_value(reader, "tokenizer.ggml.bos_token_id")),
            eos_token_id=integer("tokenizer.ggml.eos_token_id",
                                 field_value(reader, "tokenizer.ggml.eos_token_id")),
            name=str(field_value(reader, "general.name", os.path.basename(path))),
        )
    except ConfigError as e:
        raise InputError(f"GGUF metadata describes an invalid model: {e}", source=path) from None
    if "rope_freqs.weight" in names:
        factors = reader.array("rope_freqs.weight").astype(np.float64)
        cfg = cfg.replace(rope_scaling=_llama3_scaling_from_factors(cfg, factors, path))
    return cfg


def _llama3_scaling_from_factors(cfg: LlamaConfig, factors: np.ndarray,
                                 path: str) -> RopeScaling:
    # llama.cpp stores Llama-3 scaling as per-frequency divisors; match them to the published
    # settings (factor 8 for 3.1, 32 for 3.2; low 1, high 4, original context 8192).
    from fastsynth.model.rope import inverse_frequencies
    if factors.size != cfg.head_dim // 2 or not np.all(np.isfinite(factors)):
        raise InputError(f"tensor rope_freqs.weight holds {factors.size} values, expected "
                         f"{cfg.head_dim // 2} finite ones (head_dim / 2)", source=path)
    base = inverse_frequencies(cfg.replace(rope_scaling=None)).double().numpy()
    for factor in (8.0, 32.0, 16.0, 4.0):
        s = RopeScaling(factor=factor)
        scaled = inverse_frequencies(cfg.replace(rope_scaling=s)).double().numpy()
        if np.allclose(base / scaled, factors.reshape(-1), rtol=1e-3):
            return s
    raise ConfigError(f"{path}: rope_freqs do not match Llama-3 scaling (unsupported RoPE)")


# GGUF tensor name (per block) -> fastsynth parameter name.
_BLOCK = {
    "attn_norm.weight": "attn_norm.weight",
    "ffn_norm.weight": "mlp_norm.weight",
    "attn_output.weight": "attn.wo.weight",
    "ffn_down.weight": "mlp.w_down.weight",
}


def gguf_tensor_shapes(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """GGUF tensor name -> row-major shape a Llama file with ``config`` must hold."""
    q_out, kv_out = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim
    h, f = config.hidden, config.ffn
    shapes: dict[str, tuple[int, ...]] = {"token_embd.weight": (config.vocab, h),
                                          "output_norm.weight": (h,)}
    if not config.tied:
        shapes["output.weight"] = (config.vocab, h)
    for i in range(config.n_layers):
        p = f"blk.{i}."
        shapes.update({p + "attn_norm.weight": (h,), p + "ffn_norm.weight": (h,),
                       p + "attn_q.weight": (q_out, h), p + "attn_k.weight": (kv_out, h),
                       p + "attn_v.weight": (kv_out, h), p + "attn_output.weight": (h, q_out),
                       p + "ffn_gate.weight": (f, h), p + "ffn_up.weight": (f, h),
                       p + "ffn_down.weight": (h, f)})
    return shapes


def check_tensor_shapes(reader: GGUFFile, config: LlamaConfig, path: str = "") -> None:
    """Raise InputError naming the file and the first tensor that is missing or whose shape
    disagrees with ``config`` (as the metadata describes it). Runs on the tensor table
    alone, before any tensor is read or any model memory allocated: damaged metadata
    (a huge width or layer count) fails here instead of allocating gigabytes first."""
    for name, want in gguf_tensor_shapes(config).items():
        info = reader.tensors.get(name)
        if info is None:
            raise InputError(f"GGUF file lacks tensor {name} (the metadata describes "
                             f"{config.n_layers} layers)", source=path)
        if tuple(info.shape) != want:
            raise InputError(f"tensor {name} has shape {tuple(info.shape)} but the metadata "
                             f"describes {want} (damaged or inconsistent file)", source=path)


def load_gguf_state(reader: GGUFFile, config: LlamaConfig, path: str = "") -> dict[str, np.ndarray]:
    """fastsynth state dict (float32 numpy) from a GGUF file, q/k un-permuted, q/k/v and
    gate/up fused. Tensors are dequantised one at a time to keep peak memory low."""
    check_tensor_shapes(reader, config, path)
    left = set(reader.tensors) - {"rope_freqs.weight"}

    def take(name: str) -> np.ndarray:
        if name not in left:
            raise InputError(f"GGUF file lacks tensor {name}", source=path)
        left.discard(name)
        return reader.array(name)

    state = {"embed.weight": take("token_embd.weight"), "norm.weight": take("output_norm.weight")}
    if not config.tied:
        state["lm_head.weight"] = take("output.weight")
    for i in range(config.n_layers):
        p = f"blk.{i}."
        q = unpermute_qk(take(p + "attn_q.weight"), config.n_heads)
        k = unpermute_qk(take(p + "attn_k.weight"), config.n_kv_heads)
        state[f"layers.{i}.attn.wqkv.weight"] = np.concatenate([q, k, take(p + "attn_v.weight")])
        del q, k
        state[f"layers.{i}.mlp.w_gate_up.weight"] = np.concatenate(
            [take(p + "ffn_gate.weight"), take(p + "ffn_up.weight")])
        for src, dst in _BLOCK.items():
            state[f"layers.{i}.{dst}"] = take(p + src)
    if left:
        raise ConfigError(f"{path}: unexpected tensors {sorted(left)[:5]} (not a plain Llama?)")
    return state
