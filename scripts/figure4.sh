#!/usr/bin/env bash
# Reproduces docs/figure4.md: profiles 120 architectures of the paper's Table 1 space in fp32 and
# int8 (batch 1 × 128 tokens, 1 thread, thread-CPU clock, 20 timed runs each), then fits
# latency_fp32 = a · latency_int8 + b and draws the scatter. Rerunning skips measured entries.
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build src/SpeedLimit.Cli -c Release -v q -nologo
cli=src/SpeedLimit.Cli/bin/Release/net10.0/speedlimit
data=${1:-docs/data/paper-space-latency.jsonl}
"$cli" profile --count 120 --seed 0 --threads 1 --runs 20 --clock thread-cpu --output "$data"
"$cli" profile fit --input "$data" --clock thread-cpu --statistic median \
  --plot docs/figure4.png --markdown docs/figure4-results.md
