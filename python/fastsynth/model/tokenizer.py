"""Tokenizer and chat template: from GGUF metadata or an HF ``tokenizer.json``.

GGUF files with ``tokenizer.ggml.model == "gpt2"`` carry a byte-level BPE (tokens + merges);
we rebuild it with the ``tokenizers`` library, choosing the pre-tokenizer from
``tokenizer.ggml.pre``. Control tokens (type 3) become special tokens, so chat markup such as
``<|im_start|>`` encodes to one id. The chat template (Jinja, from ``tokenizer.chat_template``)
is rendered in a sandbox; models without one get ChatML.
"""
from __future__ import annotations

import json
import os
from typing import Any, Sequence

from fastsynth.errors import ConfigError, DependencyError, InputError

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
          "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

# Published pre-tokenisation patterns. GPT-2's; Llama 3's (tiktoken cl100k-style).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"""
LLAMA3_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
                  r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
# Tokens that end an assistant turn in common chat formats.
END_OF_TURN = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "</s>")


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as e:  # pragma: no cover
        raise DependencyError("tokenizers", "llm", "tokenization") from e
    return tokenizers


def _pre_tokenizer(pre: str) -> Any:
    tk = _tokenizers()
    pt = tk.pre_tokenizers
    if pre in ("smollm", "starcoder", "refact"):
        # Digits are split one by one, then GPT-2's byte-level regex.
        return pt.Sequence([pt.Digits(individual_digits=True),
                            pt.ByteLevel(add_prefix_space=False, use_regex=True)])
    if pre in ("gpt2", "gpt-2", "default"):
        return pt.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("llama-bpe", "llama3", "smaug-bpe"):
        return pt.Sequence([pt.Split(tk.Regex(LLAMA3_PATTERN), behavior="isolated"),
                            pt.ByteLevel(add_prefix_space=False, use_regex=False)])
    raise ConfigError(f"unsupported GGUF pre-tokenizer {pre!r} "
                      "(supported: smollm, starcoder, gpt2, llama-bpe)")


class Tokenizer:
    """Text <-> token ids, plus the chat template and the ids that end a turn."""

    def __init__(self, tok: Any, *, chat_template: str | None, bos_token: str | None,
                 eos_token: str | None, add_bos: bool = False):
        self.tok = tok
        self.chat_template = chat_template or CHATML
        self.bos_token, self.eos_token, self.add_bos = bos_token, eos_token, add_bos
        vocab = tok.get_vocab(with_added_tokens=True)
        ends = {eos_token, *END_OF_TURN} - {None}
        self.stop_ids = sorted(vocab[t] for t in ends if t in vocab)
        self.bos_id = vocab.get(bos_token) if bos_token else None
        self._template = None

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_gguf(cls, reader: Any, path: str = "") -> "Tokenizer":
        from fastsynth.model.gguf_file import field_value
        tk = _tokenizers()
        model = field_value(reader, "tokenizer.ggml.model")
        if model != "gpt2":
            raise ConfigError(f"{path}: unsupported GGUF tokenizer model {model!r} "
                              "(only byte-level BPE, 'gpt2', is supported)")
        tokens = list(field_value(reader, "tokenizer.ggml.tokens"))
        types = list(field_value(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
        merges = [tuple(m.split(" ", 1)) for m in field_value(reader, "tokenizer.ggml.merges", [])]
        vocab = {t: i for i, t in enumerate(tokens)}
        tok = tk.Tokenizer(tk.models.BPE(vocab=vocab, merges=merges, fuse_unk=False,
                                         byte_fallback=False))
        tok.pre_tokenizer = _pre_tokenizer(str(field_value(reader, "tokenizer.ggml.pre", "gpt2")))
        tok.decoder = tk.decoders.ByteLevel()
        # type 3 = control, 4 = user-defined (llama.cpp's token types)
        specials = [tk.AddedToken(t, special=True, normalized=False)
                    for t, ty in zip(tokens, types) if ty in (3, 4)]
        tok.add_special_tokens(specials)

        def token_name(key: str) -> str | None:
            i = field_value(reader, key)
            return tokens[int(i)] if i is not None and 0 <= int(i) < len(tokens) else None

        return cls(tok, chat_template=field_value(reader, "tokenizer.chat_template"),
                   bos_token=token_name("tokenizer.ggml.bos_token_id"),
                   eos_token=token_name("tokenizer.ggml.eos_token_id"),
                   add_bos=bool(field_value(reader, "tokenizer.ggml.add_bos_token", False)))

    @classmethod
    def from_dir(cls, directory: str | os.PathLike) -> "Tokenizer":
        """From ``tokenizer.json`` (+ ``tokenizer_config.json`` for the template/specials)."""
        tk = _tokenizers()
        path = os.path.join(directory, "tokenizer.json")
        if not os.path.isfile(path):
            raise InputError("tokenizer.json not found", source=path)
        tok = tk.Tokenizer.from_file(path)
        cfg_path = os.path.join(directory, "tokenizer_config.json")
        cfg: dict[str, Any] = {}
        if os.path.isfile(cfg_path):
            with open(cfg_path, encoding="utf-8") as f:
                cfg = json.load(f)

        def name(v: Any) -> str | None:
            return v.get("content") if isinstance(v, dict) else v

        tmpl = cfg.get("chat_template")
        if tmpl is None and os.path.isfile(os.path.join(directory, "chat_template.jinja")):
            with open(os.path.join(directory, "chat_template.jinja"), encoding="utf-8") as f:
                tmpl = f.read()
        return cls(tok, chat_template=tmpl, bos_token=name(cfg.get("bos_token")),
                   eos_token=name(cfg.get("eos_token")),
                   add_bos=bool(cfg.get("add_bos_token", False)))

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` (HF layout)."""
        self.tok.save(os.path.join(directory, "tokenizer.json"))
        cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "chat_template": self.chat_template,
               "bos_token": self.bos_token, "eos_token": self.eos_token,
               "add_bos_token": self.add_bos, "clean_up_tokenization_spaces": False}
        with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2)

    # ------------------------------------------------------------------ use
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special-token markup recognised; BOS added if the model asks)."""
        ids = self.tok.encode(text, add_special_tokens=False).ids
        if self.add_bos and self.bos_id is not None:
            ids = [self.bos_id, *ids]
        return ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        out = [e.ids for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]
        if self.add_bos and self.bos_id is not None:
            out = [[self.bos_id, *ids] for ids in out]
        return out

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def apply_chat_template(self, messages: Sequence[dict[str, str]],
                            add_generation_prompt: bool = True) -> str:
        """The prompt text for a chat (Jinja template rendered in a sandbox)."""
        if self._template is None:
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            def raise_exception(msg: str) -> None:
                raise ConfigError(f"chat template: {msg}")

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = raise_exception
            self._template = env.from_string(self.chat_template)
        return self._template.render(messages=list(messages),
                                     add_generation_prompt=add_generation_prompt,
                                     bos_token=self.bos_token or "", eos_token=self.eos_token or "")
