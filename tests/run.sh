#!/usr/bin/env bash
# Every test of svault, as a newcomer runs them on a fresh machine (README's test command) and
# as CI runs them (.ci/run calls this script): installs what the tests need and is missing,
# starts Postgres and Redis on loopback for the load generator's backend tests (and stops them
# after), builds, lints, and runs `cargo test --workspace`. Nothing is skipped: a test whose
# service is missing fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# The load generator's backend tests run against real Postgres and Redis (installed from Debian's
# packages when missing and started on loopback by bench/services.sh; the tests fail without
# them), and its report test opens the HTML pages in Debian's headless Chromium through
# chromedriver and Selenium (from PyPI).
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! python3 -c 'import selenium' >/dev/null 2>&1; then
  venv=$(mktemp -d /tmp/svault-ci-selenium.XXXXXX)
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q 'selenium>=4.10,<5'
  export LOADGEN_PYTHON=$venv/bin/python
fi
if [ -z "${SERVICES_DIR:-}" ]; then
  SERVICES_DIR=$(mktemp -d /tmp/svault-ci-services.XXXXXX)
  # Postgres runs as its own user (it refuses root), which must reach its directory inside.
  chmod 755 "$SERVICES_DIR"
  export SERVICES_DIR=$SERVICES_DIR/s
fi
eval "$(bench/services.sh start)"
: "${LOADGEN_POSTGRES_URL:?Postgres and Redis did not start (bench/services.sh start)}"
trap 'bench/services.sh stop' EXIT

# Build everything first so a compile error is reported as such, not as a test failure.
cargo build --workspace --all-targets
cargo clippy --workspace --all-targets -- -D warnings

# The product never holds the test hooks (failure injection): they compile only under
# cfg(svault_faults), which only tests/with-faults/* set for their own copies of the sources;
# engine/server/tests/no_fault_hooks.rs reads the built `svault` binary and fails if any hook is in it.
cargo test --workspace
