#!/usr/bin/env bash
# Measures the reference gateway against nginx, HAProxy and Go proxies in
# one run of the shared peer harness (../shared/bench/peers.sh, beside this
# repository). Its knobs pass through: e.g. PEERS="nginx go-stdlib" SIZES=64.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
harness=${HARNESS:-$here/../../shared/bench/peers.sh}
[ -f "$harness" ] || { echo "peer harness not found at $harness (set HARNESS)"; exit 1; }
bin=$(mktemp -d)/sluice
(cd "$here/.." && go build -o "$bin" ./examples/sluice)
export SLUICE_BIN=$bin
export EXTRA_NAME=sluice
export EXTRA_URL=${EXTRA_URL:-http://127.0.0.1:28299}
export EXTRA_CMD="$here/target.sh"
exec bash "$harness"
