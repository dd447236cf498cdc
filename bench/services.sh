#!/usr/bin/env bash
# Postgres and Redis on loopback in a temporary directory, for the load generator's backend
# tests and bench/compare.sh. Installs them from Debian's packages when missing.
#
#   bench/services.sh start     # installs if needed, starts both, prints the env lines
#   eval "$(bench/services.sh env)"   # LOADGEN_POSTGRES_URL, LOADGEN_REDIS_URL
#   bench/services.sh stop      # stops both (by the PIDs it recorded) and removes the directory
#
# Postgres: initdb + pg_ctl as the `postgres` user (Postgres refuses to run as root), port
# $PG_PORT (55432), synchronous_commit=on, fsync=on. Redis: port $REDIS_PORT (56379),
# appendonly yes, appendfsync always. State lives in $SERVICES_DIR (/tmp/svault-services).
set -euo pipefail

SERVICES_DIR=${SERVICES_DIR:-/tmp/svault-services}
PG_PORT=${PG_PORT:-55432}
REDIS_PORT=${REDIS_PORT:-56379}
PG_USER=${PG_USER:-postgres}

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
  done
  command -v pg_ctl >/dev/null 2>&1 && dirname "$(command -v pg_ctl)"
}

install_missing() {
  local need=()
  [ -n "$(pg_bin)" ] || need+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} from Debian's packages" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

# Runs a command as the Postgres owner: ourselves when not root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    id -u "$PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home "$PG_USER"
    runuser -u "$PG_USER" -- "$@"
  else
    "$@"
  fi
}

env_lines() {
  local user=$PG_USER
  [ "$(id -u)" = 0 ] || user=$(id -un)
  echo "export LOADGEN_POSTGRES_URL=postgres://$user@127.0.0.1:$PG_PORT/postgres"
  echo "export LOADGEN_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
}

start() {
  install_missing
  if [ -f "$SERVICES_DIR/redis.pid" ] || [ -f "$SERVICES_DIR/pg/postmaster.pid" ]; then
    echo "services already running in $SERVICES_DIR (bench/services.sh stop first)" >&2
    env_lines
    return 0
  fi
  mkdir -p "$SERVICES_DIR"
  chmod 755 "$SERVICES_DIR"
  local bin
  bin=$(pg_bin)
  mkdir -p "$SERVICES_DIR/pg"
  [ "$(id -u)" = 0 ] && { id -u "$PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home "$PG_USER"; chown "$PG_USER" "$SERVICES_DIR/pg"; }
  as_pg "$bin/initdb" -D "$SERVICES_DIR/pg" -A trust -U "$( [ "$(id -u)" = 0 ] && echo "$PG_USER" || id -un)" >/dev/null
  as_pg "$bin/pg_ctl" -D "$SERVICES_DIR/pg" -l "$SERVICES_DIR/pg/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$SERVICES_DIR/pg -c synchronous_commit=on -c fsync=on -c max_connections=200 -c shared_buffers=512MB" start >/dev/null
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$SERVICES_DIR" --daemonize yes \
    --pidfile "$SERVICES_DIR/redis.pid" --logfile "$SERVICES_DIR/redis.log" \
    --appendonly yes --appendfsync always --save "" >/dev/null
  for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$REDIS_PORT" ping >/dev/null
  echo "postgres (pid $(head -1 "$SERVICES_DIR/pg/postmaster.pid")) and redis (pid $(cat "$SERVICES_DIR/redis.pid")) running in $SERVICES_DIR" >&2
  env_lines
}

stop() {
  local bin
  bin=$(pg_bin || true)
  if [ -f "$SERVICES_DIR/pg/postmaster.pid" ] && [ -n "$bin" ]; then
    as_pg "$bin/pg_ctl" -D "$SERVICES_DIR/pg" -m fast -w stop >/dev/null || true
  fi
  if [ -f "$SERVICES_DIR/redis.pid" ]; then
    local pid
    pid=$(cat "$SERVICES_DIR/redis.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$SERVICES_DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) env_lines ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
