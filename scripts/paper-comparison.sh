#!/usr/bin/env bash
# The paper's comparison on real data (docs/paper-comparison.md): GLUE SST-2, all-MiniLM-L6-v2
# (built in as minilm-l6) fine-tuned as the teacher, importance-reordered into a supermodel, then
# the int8 search (SpeedLimit) and the fp32 search (AutoTinyBERT-style) at four bounds spanning the
# space's profiled int8 latencies, uniform baselines at fp32 and int8 (the pretrained shape and
# smaller ones) and the teacher itself, all placed at measured latency.
#
#   scripts/paper-comparison.sh [DATA_DIR] [RUN_FOLDER]
#
# DATA_DIR defaults to ../shared/data/glue/SST-2. Budget: sized for 2 cores in under two hours
# (a seeded subsample of SST-2's 67k training sentences; the full dev set). REDUCED=1 runs a
# much smaller budget for a heavily shared machine (its candidates stay near chance). SPEEDLIMIT=path uses a
# prebuilt speedlimit executable. TEACHER=path/teacher.safetensors uses a teacher fine-tuned
# beforehand with `speedlimit finetune` (then no teacher epochs here); LATENCY_DATA=path/latency.jsonl
# reuses latencies profiled on this machine before (only the missing ones are measured); POPULATION=n
# sets the candidates per generation (default 6). Rerunning with the same
# RUN_FOLDER resumes an interrupted run (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/glue/SST-2}
run=${2:-runs/paper-comparison}
[ -f "$data/train.tsv" ] || { echo "error: no SST-2 train.tsv in '$data'; pass the GLUE SST-2 folder as the first argument" >&2; exit 2; }
if [ -n "${SPEEDLIMIT:-}" ]; then cli=$SPEEDLIMIT   # a prebuilt speedlimit executable
else
  dotnet build src/SpeedLimit.Cli -c Release -v q -nologo
  cli=src/SpeedLimit.Cli/bin/Release/net10.0/speedlimit
fi

if [ "${REDUCED:-0}" = 1 ]; then
  # For a heavily shared machine (a previous session: load 35-50 on 2 vCPUs): latency is
  # timed on the inference thread's CPU clock, and the budget fits ~45 minutes there.
  budget=(--max-train-examples 1200 --max-dev-examples 300 --teacher-epochs 2 --teacher-lr 1e-4
          --supermodel-epochs 1 --supermodel-lr 1e-4 --finetune-epochs 0
          --profile-count 14 --generations 2 --population 3 --latency-clock thread-cpu)
else
  budget=(--max-train-examples 8000 --teacher-epochs 3 --teacher-lr 1e-4
          --supermodel-epochs 2 --supermodel-lr 1e-4 --finetune-epochs 1 --finetune-examples 2000 --finetune-lr 2e-4
          --profile-count 40 --generations 3 --population "${POPULATION:-6}" --latency-clock "${LATENCY_CLOCK:-wall}")
fi
if [ -n "${TEACHER:-}" ]; then
  # A teacher fine-tuned beforehand: drop the teacher-epoch flags, give the checkpoint.
  kept=(); skip=0
  for a in "${budget[@]}"; do
    if [ $skip = 1 ]; then skip=0; continue; fi
    case $a in --teacher-epochs|--teacher-lr) skip=1 ;; *) kept+=("$a") ;; esac
  done
  budget=("${kept[@]}" --teacher "$TEACHER")
fi
[ -n "${LATENCY_DATA:-}" ] && budget+=(--latency-data "$LATENCY_DATA")
resume=()
[ -d "$run.partial" ] && resume=(--resume)
echo "load before: $(cat /proc/loadavg)"
"$cli" search --task sst2 --data-dir "$data" --pretrained minilm-l6 --max-length 64 \
  --importance gradient --compare-fp32 \
  --bound-quantile 0.2 0.4 0.6 0.8 \
  --baseline 6,384,1536 --baseline 4,384,1536 --baseline 4,192,768 --baseline 2,384,1536 --baseline 2,192,768 \
  "${budget[@]}" --output "$run" "${resume[@]}"
echo "load after: $(cat /proc/loadavg)"
"$cli" compare --run "$run" --output docs/paper-comparison
mkdir -p docs/data/paper-comparison
cp "$run/results.json" "$run/report.md" "$run/deployment.json" "$run/latency.jsonl" docs/data/paper-comparison/
