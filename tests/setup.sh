#!/usr/bin/env bash
# What the tests need besides cargo, on a fresh machine: installs what is missing (Debian's
# chromium and chromedriver, Selenium from PyPI, Postgres and Redis), starts Postgres and Redis
# on loopback, and prints the environment the tests read, for `eval`:
#
#     eval "$(bash tests/setup.sh)" && cargo test --workspace     # README's test command
#     bench/services.sh stop                                       # afterwards
#
# Nothing is skipped: the load generator's backend and browser tests fail without these.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 3>&1 1>&2 # progress to stderr; only the exports reach stdout (fd 3)

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
  echo "export LOADGEN_PYTHON=$venv/bin/python" >&3
fi
if [ -z "${SERVICES_DIR:-}" ]; then
  SERVICES_DIR=$(mktemp -d /tmp/svault-ci-services.XXXXXX)
  # Postgres runs as its own user (it refuses root), which must reach its directory inside.
  chmod 755 "$SERVICES_DIR"
  export SERVICES_DIR=$SERVICES_DIR/s
fi
echo "export SERVICES_DIR=$SERVICES_DIR" >&3
exports=$(bench/services.sh start 3>&-) # the servers must not hold the eval's pipe open
case "$exports" in
  *LOADGEN_POSTGRES_URL*LOADGEN_REDIS_URL*) echo "$exports" >&3 ;;
  *) echo "Postgres and Redis did not start (bench/services.sh start)" >&2; exit 1 ;;
esac
