#!/usr/bin/env bash
# The local broker's storage engines as the log grows (BENCHMARKS.md, "Broker storage").
#   scripts/broker-storage-bench.sh [--storage URL]... [--sizes 100000,300000,1000000] [--port P] ...
# For each tansu STORAGE_ENGINE URL (default sqlite://tansu.db and memory://tansu/): a fresh
# broker on its own port (SIPAS_STORAGE_BENCH_PORT, default 19094) and data directory
# ($SIPAS_HOME/storage-bench/<scheme>, deleted afterwards unless --keep); at each log size the
# produce rate, a full fetch from offset 0, a paced producer's rate, the size on disk, the
# broker's RSS and the load. Needs no ClickHouse. Installs the benchmark venv if missing,
# builds `sipas` (release, under CARGO_TARGET_DIR if set; SIPAS_BIN picks another) if
# missing; all options pass through to scripts/broker_storage_bench.py (--help lists them).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SIPAS_ROOT"
source scripts/bench-setup.sh
[ -x "$SIPAS_TOOLS_DIR/bin/tansu" ] || die "tansu is not installed under $SIPAS_TOOLS_DIR: run scripts/services.sh up kafka once"
exec "$VENV/bin/python" scripts/broker_storage_bench.py --sipas "$SIPAS" --tansu "$SIPAS_TOOLS_DIR/bin/tansu" "$@"
