#!/bin/bash
# The llama.cpp vs shellfish-int4 runs reported in the README (sequential, one engine at a time).
cd /work/wt-speed
M=/work/cache/shellfish-home/data/models/qwen2.5-coder-0.5b-instruct
run() {  # threads order-tag engines timeout
  echo "== $(date -u +%H:%M:%S) threads $1 $2 load $(cut -d' ' -f1-3 /proc/loadavg)"
  .venv/bin/python -m shellfish bench --model $M --engines $3 --contexts 16,128,512 --lengths 1,32 \
    --repeats 3 --warmup 1 --threads $1 --timeout $4 --out docs/bench/llama-cpp/t$1-$2 2>&1 | tail -60
}
run 1 a shellfish-int4,llama.cpp 600
run 1 b llama.cpp,shellfish-int4 600
run 2 a shellfish-int4,llama.cpp 500
echo "== done $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
