"""Load a base model for training or merging: a Hugging Face folder or a GGUF file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["load_base"]


def load_base(base: str | Path, *, dtype: Any = None) -> tuple[Any, Any, Path | None]:
    """(model, tokenizer, template GGUF) for ``base``: a Hugging Face model folder or a ``.gguf``
    file (de-quantised by transformers' GGUF loader; the file is then the GGUF template)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(base)
    kw: dict[str, Any] = {"dtype": dtype} if dtype is not None else {}
    if p.suffix == ".gguf":
        if not p.is_file():
            msg = f"base model {p} does not exist"
            raise FileNotFoundError(msg)
        tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
        model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, **kw)
        # the weights are de-quantised to floats on load; only the marker of the GGUF origin stays,
        # and it makes the Trainer refuse to train
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)
        template: Path | None = p
    else:
        tok = AutoTokenizer.from_pretrained(str(base))
        model = AutoModelForCausalLM.from_pretrained(str(base), **kw)
        ggufs = sorted(p.glob("*.gguf")) if p.is_dir() else []
        template = ggufs[0] if ggufs else None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok, template
