#!/usr/bin/env bash
# The main job, locally: installs (if missing) and starts ClickHouse and the tansu broker
# on loopback (data under .local/), applies migrations, creates topics, starts the
# pipeline and `sipas serve` (read API + dashboard), feeds it simulated survey and hotline
# traffic, and prints where to look. Both keep running (with a trickle of live traffic)
# until Ctrl-C; then they and the services this script started are stopped.
#   --once            exit after printing the summary
#   SIPAS_DEMO_EVENTS number of simulated messages to start with (default 20000)
#   SIPAS_LOG_WARN_MIB warn at start when the broker's sqlite log is larger (default 150, about
#                     250,000 messages: BENCHMARKS.md "Broker storage")
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SIPAS_ROOT"
once=false
[ "${1:-}" = "--once" ] && once=true
export SIPAS_CONFIG="$SIPAS_ROOT/config/local.toml"
SIPAS="$SIPAS_ROOT/target/release/sipas"

started=()
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ((i=${#started[@]}-1; i>=0; i--)); do scripts/services.sh down "${started[i]}" || true; done
  exit "$status"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

for service in clickhouse kafka; do
  if [ -n "$(scripts/services.sh up "$service")" ]; then started+=("$service"); fi
done
# The trickle below adds about 430,000 messages (≈ 250 MiB of sqlite log) a day.
log_bytes="$(broker_log_bytes)"
if [ -n "$log_bytes" ]; then
  say "broker storage $(broker_storage), log $((log_bytes / 1048576)) MiB on disk"
  if [ "$log_bytes" -gt $(( ${SIPAS_LOG_WARN_MIB:-150} * 1048576 )) ]; then
    say "warning: the broker's log is over ${SIPAS_LOG_WARN_MIB:-150} MiB; benchmarks on this broker measure slower beside it (BENCHMARKS.md, \"Broker storage\"); to start afresh, stop this script and run scripts/services.sh reset (it deletes the log and ClickHouse's data)"
  fi
else
  storage="$(broker_storage)"
  say "broker storage ${storage:-unknown (no $SIPAS_HOME/tansu/broker.info)}, log not on disk"
fi

say "building sipas (release)…"
cargo build --release --locked --bin sipas 2>&1 | tail -n 2
"$SIPAS" migrate
"$SIPAS" topics
port_in_use "$SIPAS_METRICS_PORT" && die "port $SIPAS_METRICS_PORT (metrics) is taken (set SIPAS_METRICS_PORT)"
port_in_use "$SIPAS_SERVE_PORT" && die "port $SIPAS_SERVE_PORT (dashboard and API) is taken (set SIPAS_SERVE_PORT)"
mkdir -p "$SIPAS_HOME"
"$SIPAS" run 2>"$SIPAS_HOME/pipeline.log" &
pids+=($!)
"$SIPAS" serve >/dev/null 2>"$SIPAS_HOME/serve.log" &
pids+=($!)

events="${SIPAS_DEMO_EVENTS:-20000}"
say "simulating $events messages (30 days of history, 34 provinces)…"
"$SIPAS" simulate --count "$events" --days 30 --seed "$(date +%s)"

metrics_url="http://$SIPAS__METRICS__LISTEN/metrics"
consumed() { curl -fsS "$metrics_url" 2>/dev/null | awk '/^sipas_consumed_messages_total/ {s+=$2} END {print s+0}'; }
acknowledged() { curl -fsS "$metrics_url" 2>/dev/null | awk '/^sipas_(inserted_rows|dlq_messages)_total/ {s+=$2} END {print s+0}'; }
waited=0
until [ "$(acknowledged)" -ge "$events" ]; do
  kill -0 "${pids[0]}" 2>/dev/null || die "the pipeline exited; see $SIPAS_HOME/pipeline.log"
  [ "$waited" -ge 300 ] && die "the pipeline did not catch up within 300s (consumed $(consumed) of $events); see $SIPAS_HOME/pipeline.log"
  sleep 1; waited=$((waited + 1))
done

# The index processor folds the same log; wait until its position stops moving.
index_position() { curl -fsS "$metrics_url" 2>/dev/null | awk '/^sipas_index_position/ {s+=$2} END {print s+0}'; }
previous=-1; steady=0; waited=0
while [ "$steady" -lt 3 ]; do
  current="$(index_position)"
  if [ "$current" = "$previous" ] && [ "$current" != 0 ]; then steady=$((steady + 1)); else steady=0; fi
  previous="$current"
  [ "$waited" -ge 300 ] && die "the index processor did not catch up within 300s; see $SIPAS_HOME/pipeline.log"
  sleep 1; waited=$((waited + 1))
done

echo
"$SIPAS" status
echo
echo "Dead letters by reason (topic sipas.dlq):"
curl -fsS "$metrics_url" | sed -nE 's/^sipas_dlq_messages_total\{reason="([^"]+)"\} (.*)/  \1 \2/p'
echo
echo "Province ranking, 30-day window (sipas.province_ranking_latest):"
curl -fsS "$SIPAS__CLICKHOUSE__URL" --data-binary "
  SELECT rank, province_code AS code, province_name AS province, round(sipas, 2) AS sipas,
         round(access, 1) AS access, round(procedure, 1) AS procedure, round(staff, 1) AS staff,
         round(result, 1) AS result, round(feedback, 1) AS feedback, respondents,
         concat(toString(round(ci_low, 1)), '..', toString(round(ci_high, 1))) AS ci95, as_of
  FROM sipas.province_ranking_latest
  WHERE window = '30d' AND framework = 'BNV-2640-2017'
  ORDER BY isNull(rank), rank, province_code
  FORMAT PrettyCompactMonoBlock"
echo
serve_url="http://$SIPAS__SERVE__LISTEN"
echo "Dashboard:      $serve_url/"
echo "API:            $serve_url/api/v1/rankings?window=30d   $serve_url/api/v1/units/79   $serve_url/api/v1/hotline/kpis?province=79"
echo "                $serve_url/api/v1/stream (SSE)   $serve_url/api/v1/openapi.json   $serve_url/api/v1/health"
echo "Ingest gateway: POST $serve_url/api/v1/surveys and $serve_url/api/v1/hotline  (bearer tokens in [gateway]: sipas gateway-token)"
echo "Metrics:        $metrics_url  (sipas serve: $serve_url/metrics)"
echo "ClickHouse:     $SIPAS__CLICKHOUSE__URL  (database sipas; try: echo 'SELECT province_code, count() FROM sipas.survey_submissions_dedup GROUP BY province_code' | curl -s $SIPAS__CLICKHOUSE__URL --data-binary @-)"
echo "Kafka (tansu):  $SIPAS__KAFKA__BROKERS  topics sipas.surveys, sipas.hotline, sipas.dlq"
echo "Logs:           $SIPAS_HOME/pipeline.log  $SIPAS_HOME/serve.log"
$once && exit 0

echo
say "pipeline and dashboard running with live traffic (5 events/s); Ctrl-C stops them and the services this script started"
"$SIPAS" simulate --count 100000000 --rate 5 --seed "$(date +%s)" >/dev/null 2>&1 &
pids+=($!)
wait "${pids[0]}"
