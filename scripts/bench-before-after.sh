#!/usr/bin/env bash
# Runs bench sections of an earlier commit and of the working tree one after the other on this
# machine, so "N× faster than before" is a ratio of two figures measured minutes apart on the same
# CPU, not against a figure from another machine or another day.
#
#   scripts/bench-before-after.sh COMMIT SECTION [SECTION ...] [-- BENCH_FLAGS]
#
# e.g. scripts/bench-before-after.sh e96775d search train
# The earlier commit is built in a temporary git worktree (removed afterwards); its sections must
# exist there. Output: each section's text for "before" then "after", under runs/bench-before-after/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 COMMIT SECTION [SECTION ...] [-- BENCH_FLAGS]" >&2; exit 2; }
commit=$1; shift
sections=(); flags=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; flags=("$@"); break; fi
  sections+=("$1"); shift
done
git rev-parse --verify -q "$commit^{commit}" >/dev/null || { echo "error: '$commit' is not a commit here" >&2; exit 2; }
out=runs/bench-before-after; mkdir -p "$out"
# Inside this checkout, so the earlier bench finds ../shared/data the way this one does (from its folder upwards).
before=$out/before-worktree
git worktree remove --force "$before" >/dev/null 2>&1 || rm -rf "$before"
trap 'git worktree remove --force "$before" >/dev/null 2>&1 || rm -rf "$before"; git worktree prune' EXIT
git worktree add -q --detach "$before" "$commit"
dotnet build "$before/bench/SpeedLimit.Bench" -c Release -v q -nologo >/dev/null
dotnet build bench/SpeedLimit.Bench -c Release -v q -nologo >/dev/null
for s in "${sections[@]}"; do
  echo "== $s: before ($commit)"
  dotnet "$before/bench/SpeedLimit.Bench/bin/Release/net10.0/speedlimit-bench.dll" "$s" "${flags[@]}" | tee "$out/$s.before.txt"
  echo "== $s: after (working tree)"
  dotnet bench/SpeedLimit.Bench/bin/Release/net10.0/speedlimit-bench.dll "$s" "${flags[@]}" | tee "$out/$s.after.txt"
done
