#!/usr/bin/env bash
# Every benchmark, in order, on a quiet machine: `bash benchmarks/run_all.sh`.
# Each writes its table to benchmarks/results/; docs/benchmarks.md collects them.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
$py benchmarks/bench_training.py --only default,reference,loso,rhythm
$py benchmarks/bench_scoring.py --run benchmarks/out/default
$py benchmarks/bench_serve.py benchmarks/out/default --pipeline --scenario 1:0 --scenario 16:0 --scenario 16:1
$py benchmarks/bench_pseudo_ddp.py
$py benchmarks/bench_pcg.py
$py benchmarks/bench_decisions.py benchmarks/out/default
$py benchmarks/bench_audio_memory.py --one-shot
$py benchmarks/bench_serve_soak.py --minutes 10 --seconds 5 10 20
# Pretraining and its probe (issue #12) are run by hand: benchmarks/results/pretrain.md has
# the commands, and they want a quiet machine or a GPU.
