#!/bin/bash
# The llama.cpp vs shellfish-int4 runs in README "Measured" (one engine at a time, each in its
# own process). Needs `shellfish bench --build-peer llama.cpp` (finished) and
# `shellfish bench --gguf qwen2.5-coder-0.5b-instruct`. Usage: runs.sh THREADS TAG ENGINES
# e.g. runs.sh 1 a shellfish-int4,llama.cpp ; runs.sh 1 b llama.cpp,shellfish-int4
set -eu
cd "$(dirname "$0")/../../.."
# MODEL: the installed model directory
MODELS=${SHELLFISH_HOME:+$SHELLFISH_HOME/data/models}
M=${MODEL:-${MODELS:-$HOME/.local/share/shellfish/models}/qwen2.5-coder-0.5b-instruct}
echo "== $(date -u +%H:%M:%S) threads $1 $2 load $(cut -d' ' -f1-3 /proc/loadavg)"
python -m shellfish bench --model "$M" --engines "$3" --contexts 16,128,512 --lengths 1,32 \
  --repeats 3 --warmup 1 --threads "$1" --timeout 600 --out "docs/bench/llama-cpp/t$1-$2"
echo "== $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
