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

VENV="${SIPAS_BENCH_VENV:-$HOME/.cache/sipas-stream/bench-venv}"
CONFLUENT_KAFKA_VERSION="2.16.1"
CLICKHOUSE_CONNECT_VERSION="1.12.0"

venv_ready() {
  "$VENV/bin/python" - "$CONFLUENT_KAFKA_VERSION" "$CLICKHOUSE_CONNECT_VERSION" <<'PY' 2>/dev/null
import sys, confluent_kafka, clickhouse_connect
sys.exit(0 if (confluent_kafka.version(), clickhouse_connect.__version__) == (sys.argv[1], sys.argv[2]) else 1)
PY
}
if ! venv_ready; then
  say "installing confluent-kafka $CONFLUENT_KAFKA_VERSION and clickhouse-connect $CLICKHOUSE_CONNECT_VERSION into $VENV…"
  mkdir -p "$(dirname "$VENV")" "$SIPAS_HOME"
  { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q \
      "confluent-kafka==$CONFLUENT_KAFKA_VERSION" "clickhouse-connect==$CLICKHOUSE_CONNECT_VERSION"; } \
    >"$SIPAS_HOME/bench-venv.log" 2>&1 || die "creating the benchmark venv failed; see $SIPAS_HOME/bench-venv.log"
  venv_ready || die "the benchmark venv at $VENV does not import the pinned packages"
fi

SIPAS="${CARGO_TARGET_DIR:-$SIPAS_ROOT/target}/release/sipas"
if [ ! -x "$SIPAS" ]; then
  say "building sipas (release)…"
  cargo build --release --locked --bin sipas 2>&1 | tail -n 2
fi

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
