"""A tuned model for llama.cpp: merge the LoRA adapter and write a GGUF file.

:func:`merge_adapter` folds the adapter into the base weights (PEFT ``merge_and_unload``).
:func:`export_gguf` does both for a saved adapter folder and its base model (``proteus export gguf``).
:func:`write_gguf` writes the merged weights with llama.cpp's own GGUF library (``gguf``):
tensor names from ``gguf.get_tensor_name_map`` and the query / key row permutation of llama.cpp's
``convert_hf_to_gguf.py`` (``LlamaModel.permute``), hyperparameters from the model config, and
the tokenizer and chat template copied from a *template* GGUF of the same vocabulary (the base
model's own GGUF when the base was loaded from one). Matrices are written as F16, vectors as
F32, the layout ``convert_hf_to_gguf.py --outtype f16`` produces. Llama-architecture models
(Llama, SmolLM2, TinyLlama, ...) are supported. :func:`quantize_like` quantises such a file with
llama.cpp's own quantiser to the type of the base GGUF, so that base and tuned are served at the
same precision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["merge_adapter", "write_gguf", "export_gguf", "llama_permute", "quantize_like"]

_SUPPORTED = ("llama",)


def merge_adapter(model: Any) -> Any:
    """The plain model with the LoRA weights of a PEFT ``model`` folded in."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def llama_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the rows of a query / key projection from Hugging Face's rotary layout (halves)
    to llama.cpp's (interleaved pairs), as ``convert_hf_to_gguf.py`` does."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _rope_theta(config: Any) -> float:
    theta = getattr(config, "rope_theta", None)
    if theta is None:
        theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    return float(theta)


def _copy_tokenizer(writer: Any, template: str | Path) -> None:
    import gguf

    reader = gguf.GGUFReader(str(template))
    arch = reader.fields["general.architecture"].contents()
    if arch not in _SUPPORTED:
        msg = f"template GGUF {template} has architecture {arch!r}; supported: {_SUPPORTED}"
        raise ValueError(msg)
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub)


def write_gguf(model: Any, out: str | Path, *, template: str | Path, name: str = "proteus-tuned") -> Path:
    """Write the (merged) Hugging Face causal LM ``model`` to ``out`` as a llama.cpp GGUF file.

    Parameters
    ----------
    model
        A ``LlamaForCausalLM`` (or any model whose ``config.model_type`` is ``llama``).
    out
        The ``.gguf`` file to write.
    template
        A GGUF file with the model's vocabulary: its ``tokenizer.*`` keys (tokens, merges, token
        types, special ids, chat template) are copied.
    name
        ``general.name`` of the written model.
    """
    import gguf

    cfg = model.config
    if cfg.model_type not in _SUPPORTED:
        msg = f"GGUF export supports {_SUPPORTED} models; this one is {cfg.model_type!r}"
        raise ValueError(msg)
    n_head, n_kv = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name(name)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(_rope_theta(cfg))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    _copy_tokenizer(w, template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        gg_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gg_name is None:
            msg = f"no GGUF name for tensor {hf_name!r}"
            raise ValueError(msg)
        data = tensor.detach().float().cpu().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = llama_permute(data, n_head)
        elif hf_name.endswith("k_proj.weight"):
            data = llama_permute(data, n_kv)
        w.add_tensor(gg_name, data.astype(np.float16) if data.ndim > 1 else data.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def export_gguf(adapter: str | Path, base: str | Path, out: str | Path, *, template: str | Path | None = None, name: str | None = None) -> Path:
    """Merge the saved LoRA ``adapter`` folder (PEFT ``save_pretrained``) into ``base`` and write
    ``out`` as GGUF. ``base`` is what the adapter was trained on: a ``.gguf`` file (also the
    vocabulary template) or a Hugging Face model folder (``template`` then names a GGUF of the
    same vocabulary, unless the folder holds one)."""
    import torch
    from peft import PeftModel

    from proteus.train.base_model import load_base

    if not (Path(adapter) / "adapter_config.json").is_file():
        msg = f"{adapter} is not a LoRA adapter folder (no adapter_config.json)"
        raise FileNotFoundError(msg)
    model, _, found = load_base(base, dtype=torch.float32)
    template = template or found
    if template is None:
        msg = f"no GGUF with the vocabulary of {base}: give --template"
        raise ValueError(msg)
    merged = merge_adapter(PeftModel.from_pretrained(model, str(adapter)))
    return write_gguf(merged, out, template=template, name=name or f"{Path(base).stem}-proteus")


def quantize_like(gguf_in: str | Path, like: str | Path, out: str | Path) -> Path:
    """``gguf_in`` quantised by llama.cpp (``llama_model_quantize``) to the file type of the GGUF
    ``like`` (its ``general.file_type``, e.g. Q4_1); returns ``out``."""
    import ctypes

    import gguf
    import llama_cpp

    field = gguf.GGUFReader(str(like)).fields.get("general.file_type")
    if field is None:
        msg = f"{like} does not say its file type (general.file_type)"
        raise ValueError(msg)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(field.contents())
    out = Path(out)
    if llama_cpp.llama_model_quantize(str(gguf_in).encode(), str(out).encode(), ctypes.byref(params)) != 0:
        msg = f"llama.cpp could not quantise {gguf_in}"
        raise RuntimeError(msg)
    return out
