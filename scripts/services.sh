#!/usr/bin/env bash
# Local ClickHouse + Kafka-compatible broker (tansu) on loopback.
#   scripts/services.sh up       install if missing, start if not running (idempotent)
#   scripts/services.sh down     stop what `up` started (idempotent)
#   scripts/services.sh status   show what runs, the broker's storage and its log size
#   scripts/services.sh reset    delete the broker's log and ClickHouse's data (everything
#                                derived from the log), restart what was running (idempotent)
# `up` prints the names of the services it started itself on stdout, one per line,
# so callers can stop exactly those (and nothing they did not start).
# SIPAS_CH_DATA_DIR moves ClickHouse's data directory (default $SIPAS_HOME/clickhouse/data;
# kept for later calls in $SIPAS_HOME/clickhouse/data.path).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

CH_DIR="$SIPAS_HOME/clickhouse"
# ClickHouse's data directory: SIPAS_CH_DATA_DIR, else the one it was last started with
# (data.path), else under SIPAS_HOME. A tmpfs or a journaled filesystem suits it better than
# an ext4 without a journal (scripts/env.sh, journalless_ext4).
CH_DATA="${SIPAS_CH_DATA_DIR:-$(cat "$CH_DIR/data.path" 2>/dev/null || true)}"
CH_DATA="${CH_DATA:-$CH_DIR/data}"
TANSU_DIR="$SIPAS_HOME/tansu"
TANSU_BIN="$SIPAS_TOOLS_DIR/bin/tansu"
# sqlite storage keeps topics and committed offsets across broker restarts. The path is
# relative: tansu resolves it against its working directory ($TANSU_DIR).
TANSU_STORAGE="${SIPAS_KAFKA_STORAGE:-sqlite://tansu.db}"
STARTUP_TIMEOUT="${SIPAS_STARTUP_TIMEOUT:-60}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_clickhouse() {
  command -v clickhouse-server >/dev/null 2>&1 && return 0
  [ -x /usr/sbin/clickhouse-server ] && return 0
  say "installing clickhouse-server (Debian package)…"
  if ! { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq clickhouse-server clickhouse-client; } >"$SIPAS_HOME/clickhouse-install.log" 2>&1; then
    die "installing clickhouse-server failed; see $SIPAS_HOME/clickhouse-install.log"
  fi
}

install_tansu() {
  if [ -x "$TANSU_BIN" ] && "$TANSU_BIN" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then return 0; fi
  say "installing tansu $TANSU_VERSION from crates.io into $SIPAS_TOOLS_DIR (about 12 minutes, once)…"
  mkdir -p "$SIPAS_TOOLS_DIR"
  if ! CARGO_TARGET_DIR="$SIPAS_TOOLS_DIR/build" cargo install tansu --version "$TANSU_VERSION" --locked \
        --features dynostore,libsql --root "$SIPAS_TOOLS_DIR" >"$SIPAS_HOME/tansu-install.log" 2>&1; then
    die "installing tansu failed; see $SIPAS_HOME/tansu-install.log"
  fi
  rm -rf "$SIPAS_TOOLS_DIR/build"
}

clickhouse_ready() { curl -fsS "http://127.0.0.1:$SIPAS_CH_HTTP_PORT/?query=SELECT%201" >/dev/null 2>&1; }

write_clickhouse_config() {
  mkdir -p "$CH_DATA" "$CH_DIR/tmp" "$CH_DIR/log"
  echo "$CH_DATA" > "$CH_DIR/data.path"
  if journalless_ext4 "$CH_DATA"; then
    say "warning: ClickHouse's data directory $CH_DATA is on ext4 without a journal, where creating files slows down under sustained writes; insert latency and index freshness degrade with it. Set SIPAS_CH_DATA_DIR to a tmpfs (e.g. /dev/shm/sipas-clickhouse) or a journaled filesystem (BENCHMARKS.md, \"Freshness and the filesystem\")"
  fi
  sed -e 's#<path>.*</path>##' /etc/clickhouse-server/users.xml > "$CH_DIR/users.xml"
  cat > "$CH_DIR/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>$CH_DIR/log/clickhouse-server.log</log>
    <errorlog>$CH_DIR/log/clickhouse-server.err.log</errorlog>
    <size>100M</size>
    <count>2</count>
  </logger>
  <http_port>$SIPAS_CH_HTTP_PORT</http_port>
  <tcp_port>$SIPAS_CH_TCP_PORT</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>$CH_DATA/</path>
  <tmp_path>$CH_DIR/tmp/</tmp_path>
  <users_config>$CH_DIR/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
</yandex>
XML
}

start_clickhouse() {
  local pidfile="$CH_DIR/pid"
  if pid_alive "$pidfile" && clickhouse_ready; then return 1; fi
  if port_in_use "$SIPAS_CH_HTTP_PORT"; then
    if clickhouse_ready && ! pid_alive "$pidfile"; then
      say "a ClickHouse not started by these scripts answers on port $SIPAS_CH_HTTP_PORT; using it"
      return 1
    fi
    pid_alive "$pidfile" || die "port $SIPAS_CH_HTTP_PORT is taken by another process (set SIPAS_CH_HTTP_PORT)"
  fi
  port_in_use "$SIPAS_CH_TCP_PORT" && ! pid_alive "$pidfile" && die "port $SIPAS_CH_TCP_PORT is taken by another process (set SIPAS_CH_TCP_PORT)"
  if ! pid_alive "$pidfile"; then
    # A previous server may still hold the data directory's lock while it shuts down.
    wait_for_exit "$CH_DIR/pid.stopping" 30
    write_clickhouse_config
    local server=clickhouse-server; command -v clickhouse-server >/dev/null 2>&1 || server=/usr/sbin/clickhouse-server
    ( cd "$CH_DIR" && exec setsid "$server" --config-file="$CH_DIR/config.xml" >"$CH_DIR/log/stdout.log" 2>&1 ) &
    echo $! > "$pidfile"
  fi
  local waited=0
  until clickhouse_ready; do
    pid_alive "$pidfile" || die "clickhouse-server exited during start-up; see $CH_DIR/log/clickhouse-server.err.log and $CH_DIR/log/stdout.log"
    [ "$waited" -ge "$STARTUP_TIMEOUT" ] && die "clickhouse-server did not answer on 127.0.0.1:$SIPAS_CH_HTTP_PORT within ${STARTUP_TIMEOUT}s; see $CH_DIR/log/"
    sleep 1; waited=$((waited + 1))
  done
  return 0
}

kafka_ready() { port_in_use "$SIPAS_KAFKA_PORT"; }

# tansu 0.6.0's sqlite schema has no index on the `header` table, and its fetch looks up
# each returned record's headers: every record fetched scans every header stored (the
# dead-letter topic's), so consumers slow down as the DLQ grows (3 ms a record at 10,000
# header rows). The index makes that lookup a search. tansu creates its tables before it
# listens; the index is created when missing (at a fresh database's first start, while it
# is idle; an older database's at its next start) and found at later starts, when nothing
# is written: tansu's connections set no busy timeout.
index_tansu_headers() {
  local storage="${SIPAS_KAFKA_STORAGE:-sqlite://tansu.db}"
  case "$storage" in sqlite://*) ;; *) return 0 ;; esac
  local db="${storage#sqlite://}"
  case "$db" in /*) ;; *) db="$TANSU_DIR/$db" ;; esac
  python3 - "$db" <<'PY' || die "could not index the broker's header table in $db"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
if not db.execute("select 1 from sqlite_master where type = 'index' and name = 'sipas_header_record'").fetchone():
    db.execute("create index if not exists sipas_header_record on header (topition, offset_id)")
    db.commit()
PY
}

start_tansu() {
  local pidfile="$TANSU_DIR/pid"
  if pid_alive "$pidfile" && kafka_ready; then return 1; fi
  if kafka_ready && ! pid_alive "$pidfile"; then
    die "port $SIPAS_KAFKA_PORT is taken by another process (set SIPAS_KAFKA_PORT)"
  fi
  mkdir -p "$TANSU_DIR"
  if ! pid_alive "$pidfile"; then
    # What `sipas bench` and scripts/bench-baseline.sh print beside their figures.
    printf 'storage=%s\nlistener=127.0.0.1:%s\n' "$TANSU_STORAGE" "$SIPAS_KAFKA_PORT" > "$TANSU_DIR/broker.info"
    ( cd "$TANSU_DIR" && exec setsid env STORAGE_ENGINE="$TANSU_STORAGE" RUST_LOG="${TANSU_LOG:-warn}" \
        "$TANSU_BIN" broker \
        --listener-url "tcp://127.0.0.1:$SIPAS_KAFKA_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$SIPAS_KAFKA_PORT" >"$TANSU_DIR/broker.log" 2>&1 ) &
    echo $! > "$pidfile"
  fi
  local waited=0
  until kafka_ready; do
    pid_alive "$pidfile" || die "tansu exited during start-up; see $TANSU_DIR/broker.log"
    [ "$waited" -ge "$STARTUP_TIMEOUT" ] && die "tansu did not listen on 127.0.0.1:$SIPAS_KAFKA_PORT within ${STARTUP_TIMEOUT}s; see $TANSU_DIR/broker.log"
    sleep 1; waited=$((waited + 1))
  done
  index_tansu_headers
  return 0
}

wait_for_exit() { # PIDFILE SECONDS
  local waited=0
  while pid_alive "$1"; do
    [ "$waited" -ge "$2" ] && return 1
    sleep 1; waited=$((waited + 1))
  done
  rm -f "$1"
}

stop_one() { # NAME PIDFILE
  local pidfile="$2"
  if ! pid_alive "$pidfile"; then rm -f "$pidfile"; return 0; fi
  local pid; pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  mv "$pidfile" "$pidfile.stopping"
  if ! wait_for_exit "$pidfile.stopping" 30; then
    say "$1 did not stop within 30s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait_for_exit "$pidfile.stopping" 10 || die "could not stop $1 (pid $pid)"
  fi
  say "stopped $1"
}

# broker_log_summary: the running broker's storage URL and its log's size on disk.
broker_log_summary() {
  local storage bytes
  storage="$(broker_storage)"
  [ -n "$storage" ] || { echo "storage unknown (no $TANSU_DIR/broker.info)"; return; }
  bytes="$(broker_log_bytes)"
  if [ -n "$bytes" ]; then echo "storage $storage, log $((bytes / 1048576)) MiB on disk"
  else echo "storage $storage, log not on disk"; fi
}

reset_all() {
  # ClickHouse's tables are a function of the broker's log (raw rows carry its offsets, the
  # index checkpoints hold the next offset to fold): a new, empty log needs new tables too.
  port_in_use "$SIPAS_METRICS_PORT" && die "port $SIPAS_METRICS_PORT (metrics) is in use: stop run-local.sh or sipas run first"
  if ! pid_alive "$CH_DIR/pid" && clickhouse_ready; then
    die "the ClickHouse on port $SIPAS_CH_HTTP_PORT was not started by scripts/services.sh; not resetting it"
  fi
  local ch_was_up=false kafka_was_up=false
  pid_alive "$CH_DIR/pid" && ch_was_up=true
  pid_alive "$TANSU_DIR/pid" && kafka_was_up=true
  stop_one tansu "$TANSU_DIR/pid"
  stop_one clickhouse "$CH_DIR/pid"
  if [ -d "$TANSU_DIR" ]; then
    say "deleting the broker's log: $TANSU_DIR ($(du -sh "$TANSU_DIR" | cut -f1))"
    rm -rf "$TANSU_DIR"
  else
    say "no broker log at $TANSU_DIR"
  fi
  if [ -d "$CH_DATA" ]; then
    say "deleting ClickHouse's data: $CH_DATA ($(du -sh "$CH_DATA" | cut -f1))"
    rm -rf "$CH_DATA" "$CH_DIR/tmp"
  else
    say "no ClickHouse data at $CH_DATA"
  fi
  if $ch_was_up; then start_clickhouse || true; say "ClickHouse up again on http://127.0.0.1:$SIPAS_CH_HTTP_PORT (empty: run sipas migrate, or run-local.sh)"; fi
  if $kafka_was_up; then start_tansu || true; say "tansu broker up again on 127.0.0.1:$SIPAS_KAFKA_PORT (empty log: run sipas topics, or run-local.sh)"; fi
  $ch_was_up || $kafka_was_up || say "nothing was running; nothing started"
}

cmd="${1:-status}"; shift || true
mkdir -p "$SIPAS_HOME"
case "$cmd" in
  up)
    only="${1:-all}"
    if [ "$only" = all ] || [ "$only" = clickhouse ]; then
      install_clickhouse
      if start_clickhouse; then say "ClickHouse up on http://127.0.0.1:$SIPAS_CH_HTTP_PORT (data: $CH_DATA)"; echo clickhouse; fi
    fi
    if [ "$only" = all ] || [ "$only" = kafka ]; then
      install_tansu
      if start_tansu; then say "tansu broker up on 127.0.0.1:$SIPAS_KAFKA_PORT (data: $TANSU_DIR)"; echo kafka; fi
    fi
    ;;
  down)
    only="${1:-all}"
    { [ "$only" = all ] || [ "$only" = kafka ]; } && stop_one tansu "$TANSU_DIR/pid"
    { [ "$only" = all ] || [ "$only" = clickhouse ]; } && stop_one clickhouse "$CH_DIR/pid"
    true
    ;;
  status)
    pid_alive "$CH_DIR/pid" && echo "clickhouse: running (pid $(cat "$CH_DIR/pid")), data in $CH_DATA" || echo "clickhouse: stopped"
    pid_alive "$TANSU_DIR/pid" && echo "kafka (tansu): running (pid $(cat "$TANSU_DIR/pid")), $(broker_log_summary)" || echo "kafka (tansu): stopped"
    ;;
  reset) reset_all ;;
  *) die "usage: $0 up [clickhouse|kafka] | down [clickhouse|kafka] | status | reset" ;;
esac
