#!/usr/bin/env bash
# Re-renders docs/img/hubbridge_*.png: a fixed sample day (hubbridge demo --splunk-sample's generator), each
# panel's result from it (snapshots.py), and Splunk's Dashboard Studio components drawing the dashboards in
# headless Chromium (render.cjs). Needs `npm ci --prefix splunk/tools` and Debian's chromium (apt-get install chromium).
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python -c "from pathlib import Path; from bridge.splunk_sample import write_sample; write_sample(Path('$tmp/sample.json'), start=1764547200.0)"
python splunk/tools/snapshots.py "$tmp/sample.json" "$tmp/snapshots.json"
TZ=UTC node splunk/tools/render.cjs "$tmp/snapshots.json" docs/img
