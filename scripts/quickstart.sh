#!/usr/bin/env bash
# Set up .venv and run the whole pipeline on a small slice of the built-in corpus
# (Python's own documentation): fastsynth run --preset quick -o runs/quickstart.
# Leaves runs/quickstart/report.html (open it in a browser) and manifest.json (every
# stage with its state and records in / out / rejected). Re-running it resumes; stages
# whose feature is not in this fastsynth yet are listed as pending.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh llm,plan,report
OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}" .venv/bin/fastsynth run --preset quick -o runs/quickstart
echo "report: runs/quickstart/report.html"
