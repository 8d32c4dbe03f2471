#!/usr/bin/env bash
# Pipeline vs ceiling vs a plain Python baseline on the same pre-filled topics (BENCHMARKS.md).
#   scripts/bench-baseline.sh [--events N] [--seed S] [--keep] [--skip-kafka-engine] ...
# Starts ClickHouse and tansu if they are not running (and stops what it started), installs
# confluent-kafka and clickhouse-connect into a venv under ~/.cache/sipas-stream/, builds
# `sipas` (release, under CARGO_TARGET_DIR if set) if missing, then runs
# scripts/bench_baseline.py (all its options pass through).
# Ports and data directory come from scripts/env.sh (SIPAS_HOME, SIPAS_CH_HTTP_PORT, SIPAS_KAFKA_PORT…).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SIPAS_ROOT"

source scripts/bench-setup.sh

started=()
cleanup() {
  local status=$?
  for ((i=${#started[@]}-1; i>=0; i--)); do scripts/services.sh down "${started[i]}" || true; done
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for service in clickhouse kafka; do
  if [ -n "$(scripts/services.sh up "$service")" ]; then started+=("$service"); fi
done

"$VENV/bin/python" scripts/bench_baseline.py --sipas "$SIPAS" \
  --brokers "$SIPAS__KAFKA__BROKERS" --ch-url "$SIPAS__CLICKHOUSE__URL" \
  --ch-log-dir "$SIPAS_HOME/clickhouse/log" "$@"
