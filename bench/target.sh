#!/usr/bin/env bash
# Starts the reference gateway as one target of the peer harness: an
# HTTPServer on $LISTEN_ADDR whose only pipeline proxies everything to
# $BACKEND_URL. The harness sets both; $SLUICE_BIN is the built binary.
set -euo pipefail
: "${LISTEN_ADDR:?}" "${BACKEND_URL:?}" "${SLUICE_BIN:?}"
cfg=$(mktemp)
cat > "$cfg" <<YAML
kind: HTTPServer
name: bench
address: ${LISTEN_ADDR%:*}
port: ${LISTEN_ADDR##*:}
rules:
  - paths:
    - pathPrefix: /
      backend: proxy
---
kind: Pipeline
name: proxy
filters:
  - name: proxy
    kind: Proxy
    pools:
    - servers:
      - url: ${BACKEND_URL}
YAML
exec "$SLUICE_BIN" server -f "$cfg" -admin 127.0.0.1:0 -log-level error
