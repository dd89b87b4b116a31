#!/usr/bin/env bash
# The reference MJML compiler (npm `mjml` 4) that tests/test_mjml_reference.py compares the project's
# rendering with, installed into build/node/ (gitignored). Idempotent and quiet. Without npm it
# installs nothing: the test then skips saying so (and fails in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/node/node_modules/.bin/mjml ] && exit 0
if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found: the reference MJML compiler is not installed" >&2
  exit 0
fi
mkdir -p build/node
npm install --prefix build/node --no-audit --no-fund --loglevel=error mjml@4 >/dev/null
