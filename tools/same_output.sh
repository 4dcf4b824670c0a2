#!/usr/bin/env bash
# Byte-identity check for a restructuring commit: re-render saved runs (torch-free: HTML, Markdown, metrics.json,
# the gate's JUnit XML and job summary) and compare every file with a snapshot taken before the change.
#
#   tools/same_output.sh snapshot SNAPSHOT_DIR RESULTS_DIR...   # before the change
#   tools/same_output.sh compare  SNAPSHOT_DIR RESULTS_DIR...   # after it: exit 1 on the first differing byte
#
# RESULTS_DIR: a run's results/ folder (e.g. output/results). Figures are compared too (HTML embeds the PNGs,
# the Markdown's figures/ folder holds them).
set -euo pipefail
mode=$1 snapshot=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for results in "$@"; do
  name=$(basename "$(dirname "$(realpath "$results")")")
  out="$work/$name"
  mkdir -p "$out"
  reportgen render "$results" --out "$out" --format html,md,json >/dev/null
  status=0
  GITHUB_STEP_SUMMARY="$out/summary.md" reportgen gate "$results" --junit "$out/gate.xml" >"$out/gate.txt" 2>&1 \
    || status=$?
  echo "exit $status" >>"$out/gate.txt"
  sed -i "s#$work#WORK#g" "$out/gate.txt"  # the message names the JUnit file's (temporary) path
  # the saved results themselves are read, never written: check that too
  (cd "$results" && find . -type f -name '*.json' -print0 | sort -z | xargs -0 sha256sum) >"$out/results.sha256"
done
if [ "$mode" = snapshot ]; then
  rm -rf "$snapshot" && mkdir -p "$(dirname "$snapshot")" && cp -r "$work" "$snapshot"
  echo "snapshot of $# run(s) in $snapshot: $(find "$snapshot" -type f | wc -l) files"
else
  if diff -rq "$snapshot" "$work"; then
    echo "byte-identical: $(find "$work" -type f | wc -l) files of $# run(s)"
  else
    echo "DIFFERENT (above)"; exit 1
  fi
fi
