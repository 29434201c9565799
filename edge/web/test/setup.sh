#!/usr/bin/env bash
# Installs what the JavaScript tests of edge/web need:
#   - Chromium from Debian's packages, for the browser test (e2e.test.mjs),
#     when /usr/bin/chromium is missing;
#   - the npm devDependencies (ws, playwright-core) with npm ci.
# Run it from anywhere; then, from the repository root:
#   node --test edge/web/test/
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium
fi

npm ci --no-audit --no-fund
