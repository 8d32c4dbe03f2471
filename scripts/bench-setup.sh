# What the benchmark scripts need: the Python venv (confluent-kafka, clickhouse-connect,
# pinned) and a release `sipas` (SIPAS_BIN, else built under CARGO_TARGET_DIR or target/ if
# missing). Sourced after env.sh by scripts/bench-baseline.sh and
# scripts/broker-storage-bench.sh, from the repository root; sets VENV and SIPAS.
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

SIPAS="${SIPAS_BIN:-${CARGO_TARGET_DIR:-$SIPAS_ROOT/target}/release/sipas}"
if [ ! -x "$SIPAS" ]; then
  say "building sipas (release)…"
  cargo build --release --locked --bin sipas 2>&1 | tail -n 2
fi
