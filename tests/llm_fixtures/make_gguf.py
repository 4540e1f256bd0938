"""Write a tiny random-weight llama GGUF that llama.cpp loads: the model under test for the
llama.cpp backend, the fault proxy and the end-to-end ``--model llamacpp:tiny`` run.

Architecture ``llama`` (2 layers, 64-d embeddings, 4 heads, 128-d feed-forward), float32
weights drawn from N(0, 0.02) with a fixed seed, and a SentencePiece-style (``llama``) vocabulary
of three control tokens plus the 256 byte tokens ``<0x00>``..``<0xFF>``, so any text tokenises by
byte fallback and any grammar can be followed. A ChatML-like chat template is embedded so the
llama.cpp server needs no ``--chat_format``. The model talks nonsense; constrained decoding makes
its answers JSON-shaped, which is what the tests exercise.

Usage: ``python tests/llm_fixtures/make_gguf.py OUT.gguf``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def write_tiny_llama(path: str | Path, *, n_embd: int = 64, n_layer: int = 2, n_head: int = 4, n_ff: int = 128, n_ctx: int = 32768, seed: int = 0) -> Path:
    """Write the tiny model to ``path`` and return it."""
    import gguf

    path = Path(path)
    rng = np.random.default_rng(seed)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    n_vocab = len(tokens)

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("proteus-tiny-test")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)

    ones = lambda n: np.ones(n, dtype=np.float32)  # noqa: E731
    w.add_tensor("token_embd.weight", mat(n_vocab, n_embd))
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", ones(n_embd))
        w.add_tensor(f"blk.{i}.attn_q.weight", mat(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.attn_k.weight", mat(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.attn_v.weight", mat(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.attn_output.weight", mat(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", ones(n_embd))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", mat(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_up.weight", mat(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_down.weight", mat(n_embd, n_ff))
    w.add_tensor("output_norm.weight", ones(n_embd))
    w.add_tensor("output.weight", mat(n_vocab, n_embd))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


if __name__ == "__main__":
    out = write_tiny_llama(sys.argv[1] if len(sys.argv) > 1 else "tiny.gguf")
    print(out)
