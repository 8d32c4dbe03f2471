# Shared settings for the local service scripts. Sourced, not executed.
# Everything the scripts create lives under SIPAS_HOME (project-owned, git-ignored);
# installed tools are cached under SIPAS_TOOLS_DIR so fresh clones reuse them.
SIPAS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SIPAS_ROOT
export SIPAS_HOME="${SIPAS_HOME:-$SIPAS_ROOT/.local}"
export SIPAS_TOOLS_DIR="${SIPAS_TOOLS_DIR:-$HOME/.cache/sipas-stream/tools}"
export TANSU_VERSION="0.6.0"
export SIPAS_CH_HTTP_PORT="${SIPAS_CH_HTTP_PORT:-18123}"
export SIPAS_CH_TCP_PORT="${SIPAS_CH_TCP_PORT:-19000}"
export SIPAS_KAFKA_PORT="${SIPAS_KAFKA_PORT:-19092}"
export SIPAS_METRICS_PORT="${SIPAS_METRICS_PORT:-19100}"
export SIPAS_SERVE_PORT="${SIPAS_SERVE_PORT:-18080}"
# The pipeline reads these (see config/default.toml for every key).
export SIPAS__KAFKA__BROKERS="${SIPAS__KAFKA__BROKERS:-127.0.0.1:$SIPAS_KAFKA_PORT}"
export SIPAS__CLICKHOUSE__URL="${SIPAS__CLICKHOUSE__URL:-http://127.0.0.1:$SIPAS_CH_HTTP_PORT}"
export SIPAS__METRICS__LISTEN="${SIPAS__METRICS__LISTEN:-127.0.0.1:$SIPAS_METRICS_PORT}"
export SIPAS__SERVE__LISTEN="${SIPAS__SERVE__LISTEN:-127.0.0.1:$SIPAS_SERVE_PORT}"

say() { printf '[sipas] %s\n' "$*" >&2; }
die() { printf '[sipas] ERROR: %s\n' "$*" >&2; exit 1; }

# port_in_use PORT: true when something listens on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# broker_storage: the storage URL scripts/services.sh started the broker with (from
# $SIPAS_HOME/tansu/broker.info), or nothing.
broker_storage() { sed -n 's/^storage=//p' "$SIPAS_HOME/tansu/broker.info" 2>/dev/null || true; }

# broker_log_bytes: the size on disk of the broker's sqlite log (database, WAL, shared
# memory), or nothing when its storage is not sqlite or unknown.
broker_log_bytes() {
  local storage file bytes=0 suffix
  storage="$(broker_storage)"
  case "$storage" in sqlite://*) ;; *) return 0 ;; esac
  file="${storage#sqlite://}"; file="${file%%\?*}"; file="${file#/}"
  for suffix in "" -wal -shm -journal; do
    [ -f "$SIPAS_HOME/tansu/$file$suffix" ] && bytes=$((bytes + $(stat -c %s "$SIPAS_HOME/tansu/$file$suffix")))
  done
  echo "$bytes"
}

# pid_alive FILE: true when FILE holds the pid of a running process.
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# journalless_ext4 DIR: true when DIR is on an ext4 filesystem without a journal. There ext4
# skips, when it allocates an inode, every free inode released in the last 60 s (360 s while
# its inode table block is not yet written back), looking each one up: ClickHouse 18.16
# creates 15-90 files per insert and deletes as many after merges, so under sustained writes
# most of its CPU goes to creating files (BENCHMARKS.md, "Freshness and the filesystem").
journalless_ext4() {
  local dev
  dev="$(df --output=source "$1" 2>/dev/null | tail -n 1)"; dev="${dev##*/}"
  [ -n "$dev" ] && [ -d "/proc/fs/ext4/$dev" ] || return 1
  ! ls /proc/fs/jbd2/ 2>/dev/null | grep -q "^$dev-"
}
