#!/usr/bin/env bash
# prebuildify drives node-gyp ("rebuild --target=... --release"); krunbox
# builds with cmake-js (addon, runner, agent, libkrun test double) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
exec npx --no-install cmake-js build --out build
