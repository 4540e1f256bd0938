"""Sampling under the grammar the model is served with, so rewards measure content, not format.

Served by llama.cpp, a decision's answer is decoded under the GBNF grammar that llama-cpp-python
compiles from the schema the llamacpp backend sends (:func:`proteus.llm.openai_backend.grammar_schema`
of the decision schema; ``llama_grammar.json_schema_to_gbnf``). A served model can therefore only
write JSON of that shape, with the run's names as enums. :class:`ServingGrammar` applies the very
same grammar, with llama.cpp's own grammar sampler, to transformers logits: before each token every
vocabulary entry the grammar forbids gets ``-inf`` (:meth:`ServingGrammar.processor`, a
``LogitsProcessor``; checked lazily, as llama.cpp does), and the chosen token advances the grammar. Held-out answers and GRPO's
sampled answers (:func:`grammar_rollout`, TRL ``GRPOTrainer(rollout_func=...)``) are both drawn
this way. GRPO then scores (and so trains on) what the grammar leaves free; its loss still uses
the unconstrained policy's log-probabilities of those tokens.

The vocabulary comes from the base model's GGUF (the one llama.cpp serves); transformers'
tokenizer read from the same file has the same token ids.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["ServingGrammar", "grammar_rollout", "prompt_key"]

_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])  # llama_token_data


def prompt_key(messages: list[dict[str, str]]) -> str:
    """A chat prompt as a lookup key."""
    return json.dumps(messages, sort_keys=True, ensure_ascii=False)


class ServingGrammar:
    """llama.cpp's grammar sampler over the vocabulary of ``gguf`` (loaded vocabulary only)."""

    def __init__(self, gguf: str | Path):
        import llama_cpp as C
        from llama_cpp._logger import set_verbose

        set_verbose(False)
        C.llama_backend_init()
        params = C.llama_model_default_params()
        params.vocab_only = True
        self._C = C
        self._model = C.llama_model_load_from_file(str(gguf).encode(), params)
        if not self._model:
            msg = f"llama.cpp cannot read the vocabulary of {gguf}"
            raise ValueError(msg)
        self._vocab = C.llama_model_get_vocab(self._model)
        self.n_vocab = int(C.llama_vocab_n_tokens(self._vocab))
        self._gbnf: dict[str, str] = {}

    def __del__(self) -> None:
        if getattr(self, "_model", None) and self._C.llama_model_free is not None:  # None at interpreter exit
            self._C.llama_model_free(self._model)

    def gbnf(self, schema: dict[str, Any]) -> str:
        """The GBNF grammar llama-cpp-python's server compiles for ``schema`` sent by the llamacpp backend."""
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        from proteus.llm.openai_backend import grammar_schema

        key = json.dumps(schema, sort_keys=True)
        if key not in self._gbnf:
            self._gbnf[key] = json_schema_to_gbnf(json.dumps(grammar_schema(schema)))
        return self._gbnf[key]

    def served_text(self, ids: list[int]) -> str:
        """The text llama-cpp-python returns for answer tokens ``ids``: the vocabulary's byte pieces
        joined (control tokens left out) and decoded as UTF-8, invalid bytes ignored."""
        buf = ctypes.create_string_buffer(256)
        pieces = []
        for t in ids:
            n = self._C.llama_token_to_piece(self._vocab, t, buf, len(buf), 0, False)
            pieces.append(buf.raw[:n])
        return b"".join(pieces).decode("utf-8", errors="ignore")

    def sampler(self, schema: dict[str, Any]) -> _Sampler:
        """A fresh grammar state for one answer to ``schema``."""
        return _Sampler(self, self.gbnf(schema))

    def processor(self, schemas: list[dict[str, Any]], *, sample: bool = False) -> Any:
        """A transformers ``LogitsProcessor`` for one ``generate`` call: row ``i`` of the batch
        follows ``schemas[i]``. ``sample``: the call samples (``do_sample=True``, no top-k / top-p
        warper: transformers runs warpers before this processor); otherwise it decodes greedily.

        As llama.cpp's own sampler does, the token the model would pick is drawn first (the
        argmax, or a draw from the scores' softmax) and only if the grammar rejects it are all
        forbidden tokens masked (every scan of the vocabulary costs milliseconds, more inside
        long bounded strings). A drawn token the grammar accepts is returned as the only
        candidate; otherwise the masked scores are, and transformers draws from them: either way
        a token comes with probability p(t) / p(allowed), the distribution under the full mask."""
        from transformers import LogitsProcessor

        grammar = self

        class _Processor(LogitsProcessor):
            def __init__(self) -> None:
                self.states = [grammar.sampler(s) for s in schemas]
                self.start: int | None = None

            def __call__(self, input_ids: Any, scores: Any) -> Any:
                import torch

                if self.start is None:
                    self.start = input_ids.shape[1]
                elif input_ids.shape[1] > self.start:
                    for state, tok in zip(self.states, input_ids[:, -1].tolist()):
                        state.accept(tok)
                logits = scores[:, : grammar.n_vocab].float()
                first = torch.multinomial(torch.softmax(logits, dim=-1), 1)[:, 0] if sample else logits.argmax(dim=-1)
                out = torch.full_like(scores, float("-inf"))
                for i, state in enumerate(self.states):
                    t = int(first[i])
                    if state.done:  # finished: transformers pads this row whatever is drawn
                        out[i] = scores[i]
                    elif state.allows(t):
                        out[i, t] = scores[i, t]
                    else:
                        allowed = torch.from_numpy(state.allowed()).to(scores.device)
                        if not allowed.any():
                            msg = "the grammar allows no token of the vocabulary"
                            raise RuntimeError(msg)
                        out[i, : grammar.n_vocab] = scores[i, : grammar.n_vocab].masked_fill(~allowed, float("-inf"))
                return out

        return _Processor()


class _Sampler:
    """One answer's grammar state: which tokens may come next, and the token that came."""

    def __init__(self, grammar: ServingGrammar, gbnf: str):
        C = grammar._C
        self._C, self._vocab = C, grammar._vocab
        self._smpl = C.llama_sampler_init_grammar(grammar._vocab, gbnf.encode(), b"root")
        if not self._smpl:
            msg = "llama.cpp rejected the grammar"
            raise ValueError(msg)
        self._buf = np.zeros(grammar.n_vocab, dtype=_TOKEN_DATA)
        self._ids = np.arange(grammar.n_vocab, dtype=np.int32)
        self.done = False

    def __del__(self) -> None:
        if getattr(self, "_smpl", None) and self._C.llama_sampler_free is not None:  # None at interpreter exit
            self._C.llama_sampler_free(self._smpl)

    def allowed(self) -> np.ndarray:
        """Boolean mask over the vocabulary: the tokens the grammar allows next (end-of-generation
        tokens only once the answer is complete)."""
        C, buf = self._C, self._buf
        buf["id"] = self._ids
        buf["logit"] = 0.0
        arr = C.llama_token_data_array(data=buf.ctypes.data_as(C.llama_token_data_p), size=len(buf), selected=-1, sorted=False)
        C.llama_sampler_apply(self._smpl, ctypes.byref(arr))
        mask = np.zeros(len(buf), dtype=bool)
        mask[buf["id"][np.isfinite(buf["logit"])]] = True
        return mask

    def allows(self, token: int) -> bool:
        """Whether the grammar allows ``token`` next."""
        C = self._C
        one = np.array([(token, 0.0, 0.0)], dtype=_TOKEN_DATA)
        arr = C.llama_token_data_array(data=one.ctypes.data_as(C.llama_token_data_p), size=1, selected=-1, sorted=False)
        C.llama_sampler_apply(self._smpl, ctypes.byref(arr))
        return bool(np.isfinite(one["logit"][0]))

    def accept(self, token: int) -> None:
        """Advance past ``token`` (one :meth:`allowed` permitted); an end-of-generation token ends the answer."""
        if self.done:
            return
        if self._C.llama_vocab_is_eog(self._vocab, token):
            self.done = True
            return
        self._C.llama_sampler_accept(self._smpl, token)


def grammar_rollout(
    grammar: ServingGrammar | None, tokenizer: Any, schemas: dict[str, dict[str, Any]], budgets: dict[str, int] | None = None,
) -> Callable[[list, Any], dict[str, Any]]:
    """TRL ``GRPOTrainer`` ``rollout_func``: each prompt (one entry per answer wanted, as the trainer
    passes them) is answered once by the trainer's model, sampled at the trainer's temperature under
    the grammar of its schema (``schemas``: :func:`prompt_key` -> decision schema); with no
    ``grammar``, unconstrained. An answer is at most the trainer's ``max_completion_length`` long,
    or its prompt's own budget in ``budgets`` (:func:`proteus.train.evaluate.answer_budget`) when shorter."""
    from proteus.train.evaluate import generate

    def rollout(prompts: list[list[dict[str, str]]], trainer: Any) -> dict[str, Any]:
        texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
        prompt_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        processor = grammar.processor([schemas[prompt_key(p)] for p in prompts], sample=True) if grammar is not None else None
        cap = trainer.max_completion_length
        limits = [min(cap, (budgets or {}).get(prompt_key(p), cap)) for p in prompts]
        completion_ids = generate(
            trainer.model, tokenizer, texts, max_new_tokens=limits, do_sample=True,
            temperature=trainer.temperature, logits_processor=processor,
        )
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    return rollout
