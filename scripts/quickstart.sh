#!/usr/bin/env bash
# Set up .venv and run the main job on the built-in corpus: score Python's own reference
# documentation for quality and write runs/quickstart/ (scores.parquet, summary.md,
# summary.json, gzip_ratio_hist.png).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh report
.venv/bin/fastsynth score builtin:python-docs -o runs/quickstart
echo "summary: runs/quickstart/summary.md"
