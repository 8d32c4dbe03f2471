#!/usr/bin/env bash
# Tools that the API and dashboard tests drive: Debian's `chromium` (headless dashboard
# test) and schemathesis from PyPI (OpenAPI conformance), pinned, in a virtualenv under the
# tools cache. Installs what is missing, quietly when everything is there, and prints
# `export` lines naming both for the tests (scripts/test.sh evaluates them).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
SCHEMATHESIS_VERSION="4.32.5"
SCHEMATHESIS_VENV="$SIPAS_TOOLS_DIR/schemathesis-$SCHEMATHESIS_VERSION"
mkdir -p "$SIPAS_HOME" "$SIPAS_TOOLS_DIR"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v chromium >/dev/null 2>&1; then
  say "installing chromium (Debian package) for the dashboard test…"
  if ! { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium; } >"$SIPAS_HOME/chromium-install.log" 2>&1; then
    die "installing chromium failed; see $SIPAS_HOME/chromium-install.log"
  fi
fi

if [ ! -x "$SCHEMATHESIS_VENV/bin/st" ]; then
  say "installing schemathesis $SCHEMATHESIS_VERSION (PyPI) into $SCHEMATHESIS_VENV…"
  log="$SIPAS_HOME/schemathesis-install.log"
  if ! python3 -m venv "$SCHEMATHESIS_VENV" >"$log" 2>&1; then
    # Debian's python3 ships venv separately.
    { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv && rm -rf "$SCHEMATHESIS_VENV" && python3 -m venv "$SCHEMATHESIS_VENV"; } >>"$log" 2>&1 \
      || die "creating a Python virtualenv failed; see $log"
  fi
  "$SCHEMATHESIS_VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION" >>"$log" 2>&1 \
    || { rm -rf "$SCHEMATHESIS_VENV"; die "installing schemathesis failed; see $log"; }
fi

echo "export SIPAS_TEST_CHROMIUM=$(command -v chromium)"
echo "export SIPAS_TEST_SCHEMATHESIS=$SCHEMATHESIS_VENV/bin/st"
