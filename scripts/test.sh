#!/usr/bin/env bash
# The whole test suite against the real services: installs (if missing) and starts
# ClickHouse and the tansu broker on loopback, runs every test, then stops exactly the
# services this script started. Extra arguments go to `cargo test`.
set -euo pipefail
# Tests get their own services (own data directory and ports), so they can run beside
# `scripts/run-local.sh`, and start from an empty broker log each time. The test broker
# keeps its log in memory: tansu's sqlite storage slows down as it grows, no test
# restarts the broker, and test topics are never reused.
export SIPAS_HOME="${SIPAS_TEST_HOME:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.local/test}"
export SIPAS_CH_HTTP_PORT="${SIPAS_TEST_CH_HTTP_PORT:-28123}"
export SIPAS_CH_TCP_PORT="${SIPAS_TEST_CH_TCP_PORT:-29000}"
export SIPAS_KAFKA_PORT="${SIPAS_TEST_KAFKA_PORT:-29092}"
export SIPAS_METRICS_PORT="${SIPAS_TEST_METRICS_PORT:-29100}"
export SIPAS_KAFKA_STORAGE="${SIPAS_TEST_KAFKA_STORAGE:-memory://tansu/}"
unset SIPAS__KAFKA__BROKERS SIPAS__CLICKHOUSE__URL SIPAS__METRICS__LISTEN SIPAS__SERVE__LISTEN SIPAS_CH_DATA_DIR
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SIPAS_ROOT"
mkdir -p "$SIPAS_HOME"
# The tests' ClickHouse data is thrown away after the run. On an ext4 without a journal it
# goes to a tmpfs instead: there each file ClickHouse creates costs more the more files were
# deleted in the last minutes (scripts/env.sh, journalless_ext4), and a whole suite creates
# and deletes hundreds of thousands. SIPAS_TEST_CH_DATA_DIR chooses the directory. Only for
# the ClickHouse this script starts (not exported: the fault tests' private ones keep theirs).
test_ch_data="${SIPAS_TEST_CH_DATA_DIR:-}"
scratch_ch_data=""
if [ -z "$test_ch_data" ] && ! pid_alive "$SIPAS_HOME/clickhouse/pid" && journalless_ext4 "$SIPAS_HOME" \
    && [ "$(df --output=fstype /dev/shm 2>/dev/null | tail -n 1 | tr -d ' ')" = tmpfs ]; then
  scratch_ch_data="/dev/shm/sipas-test-clickhouse-$SIPAS_CH_HTTP_PORT"
  test_ch_data="$scratch_ch_data"
  say "ClickHouse data for the tests on tmpfs: $test_ch_data ($SIPAS_HOME is on ext4 without a journal)"
fi

started=()
cleanup() {
  local status=$?
  for ((i=${#started[@]}-1; i>=0; i--)); do scripts/services.sh down "${started[i]}" || true; done
  # The tmpfs data of a ClickHouse this script started and stopped.
  if [ -n "$scratch_ch_data" ] && [[ " ${started[*]} " == *" clickhouse "* ]]; then rm -rf "$scratch_ch_data"; fi
  exit "$status"
}
trap cleanup EXIT

# chromium and schemathesis for the serve tests (installed if missing).
tools="$(scripts/test-tools.sh)" || exit 1
eval "$tools"

if ! pid_alive "$SIPAS_HOME/tansu/pid"; then rm -f "$SIPAS_HOME"/tansu/tansu.db*; fi
if [ -n "$(SIPAS_CH_DATA_DIR="$test_ch_data" scripts/services.sh up clickhouse)" ]; then started+=(clickhouse); fi
if [ -n "$(scripts/services.sh up kafka)" ]; then started+=(kafka); fi

say "running the test suite (broker $SIPAS__KAFKA__BROKERS, ClickHouse $SIPAS__CLICKHOUSE__URL)"
started_at=$(date +%s)
# The integration tests are #[ignore]d, so that a plain `cargo test` (no services) lists
# them as ignored with the reason; here the services are up and every one of them runs:
# nothing is skipped, so the suite cannot pass by skipping.
if [ $# -gt 0 ]; then
  has_separator=false
  for arg in "$@"; do [ "$arg" = "--" ] && has_separator=true; done
  if $has_separator; then
    cargo test --locked "$@" --include-ignored
  else
    cargo test --locked "$@" -- --include-ignored
  fi
else
  cargo test --locked --lib --bins -- --include-ignored
  # One test binary at a time, each on a fresh broker log when this script started the
  # broker: tansu keeps every idempotent producer's sequences in one metadata document that
  # it rewrites at each produce request, so over a whole suite (hundreds of producers)
  # produce requests slow down until a test's own producer times out and is fenced.
  for test_file in tests/*.rs; do
    if [[ " ${started[*]} " == *" kafka "* ]]; then
      scripts/services.sh down kafka >/dev/null
      scripts/services.sh up kafka >/dev/null
    fi
    cargo test --locked --test "$(basename "$test_file" .rs)" -- --include-ignored
  done
  cargo test --locked --doc
fi
say "test suite passed in $(( $(date +%s) - started_at ))s"
