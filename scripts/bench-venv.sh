# The benchmarks' Python venv (confluent-kafka, clickhouse-connect), pinned. Sourced after
# env.sh by scripts/bench-baseline.sh and scripts/broker-storage-bench.sh; sets VENV.
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
