#!/usr/bin/env bash
# Refresh the README's gallery from a finished small-default run (`make demo` first):
# the HTML report, a screenshot of it (needs Debian's chromium) and a few figures as PNG.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/snakemake --report results/report.html
figures=(
  fig03_sft_smollm2-135m_immigration-policies
  fig07_po_smollm2-135m_sft-taskish_planted_support_abortion
  fig11-14_dpo_sft-taskish_climate-change-concerns
  fig19_sft_dataset_stances
  fig20_value_gap
  vprism_clusters
)
for name in "${figures[@]}"; do cp "results/figures/$name.png" docs/gallery/; done
cp results/judge/agreement/confusion.png docs/gallery/judge_agreement_confusion.png
for table in table09-12_smollm2-135m_sft table13-16_smollm2-135m_sft-taskish_po table17_downstream; do
  cp "results/tables/$table.md" docs/gallery/
done
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$(mktemp -d)" --hide-scrollbars --window-size=1400,900 \
  --virtual-time-budget=10000 --screenshot=docs/gallery/report.png "file://$PWD/results/report.html"
