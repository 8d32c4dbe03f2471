#!/usr/bin/env bash
# The whole test suite against the real services: installs (if missing) and starts
# ClickHouse and the tansu broker on loopback, runs every test, then stops exactly the
# services this script started. Extra arguments go to `cargo test`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SIPAS_ROOT"

started=()
cleanup() {
  local status=$?
  for ((i=${#started[@]}-1; i>=0; i--)); do scripts/services.sh down "${started[i]}" || true; done
  exit "$status"
}
trap cleanup EXIT

for service in clickhouse kafka; do
  if [ -n "$(scripts/services.sh up "$service")" ]; then started+=("$service"); fi
done

say "running the test suite (broker $SIPAS__KAFKA__BROKERS, ClickHouse $SIPAS__CLICKHOUSE__URL)"
started_at=$(date +%s)
cargo test --locked "$@"
say "test suite passed in $(( $(date +%s) - started_at ))s"
