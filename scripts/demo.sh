#!/usr/bin/env bash
# demo.sh BUILD_DIR: the fake cloro upstream and cloro-proxy together on
# loopback, with curl lines to try. Called by `make demo`. Both processes log
# to ./var/demo-fake.log and ./var/demo-proxy.log; the cache lives in
# ./var/demo-cache (kept between runs). Ctrl-C stops both (SIGTERM).
#
# Environment: DEMO_LISTEN (default 127.0.0.1:8787) is where the proxy listens;
# DEMO_START_TIMEOUT (seconds, default 10) bounds each start-up.
set -euo pipefail

usage() {
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
}
[ $# -eq 1 ] || usage

root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$1" 2>/dev/null && pwd) || {
  echo "demo: build directory '$1' not found; run 'make build' first" >&2
  exit 1
}
cd "$root"

fake_bin="$build/tests/fake_cloro/fake_cloro"
proxy_bin="$build/proxy/cloro-proxy"
listen=${DEMO_LISTEN:-127.0.0.1:8787}
start_timeout=${DEMO_START_TIMEOUT:-10}
api_key=sk_live_demo

for bin in "$proxy_bin" "$fake_bin"; do
  if [ ! -x "$bin" ]; then
    echo "demo: $bin is missing; run 'make build' (the fake needs CLORO_TESTS=ON)" >&2
    exit 1
  fi
done

mkdir -p var/demo-cache
fake_log=var/demo-fake.log
proxy_log=var/demo-proxy.log
: >"$fake_log"
: >"$proxy_log"

fake_pid=
proxy_pid=
stopping=

# Sends TERM to what is running, waits a bounded time, then KILLs.
stop_all() {
  [ -z "$stopping" ] || return 0
  stopping=1
  trap - INT TERM
  local pids=() pid
  for pid in "$proxy_pid" "$fake_pid"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  local deadline=$((SECONDS + 10))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "demo: pid $pid ignored SIGTERM for 10s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
}

on_signal() {
  echo
  echo "demo: stopping (logs in $fake_log and $proxy_log)"
  stop_all
  exit 0
}

trap stop_all EXIT
trap on_signal INT TERM

# Polls LOG until a line has "event=listening addr=HOST:PORT" and prints
# HOST:PORT; fails if PID exits or the deadline passes first.
wait_listening() {
  local name=$1 pid=$2 log=$3
  local deadline=$((SECONDS + start_timeout)) line
  while :; do
    line=$(grep -m1 -o 'event=listening addr=[^ ]*' "$log" 2>/dev/null || true)
    if [ -n "$line" ]; then
      echo "${line#event=listening addr=}"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "demo: $name exited during start-up; its log ($log):" >&2
      tail -n 20 "$log" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "demo: $name did not report listening within ${start_timeout}s; its log ($log):" >&2
      tail -n 20 "$log" >&2
      return 1
    fi
    sleep 0.1
  done
}

# setsid: a process group of their own, so the terminal's Ctrl-C reaches only
# this script, which then stops them with SIGTERM.
setsid "$fake_bin" --listen 127.0.0.1:0 --api-key "$api_key" >"$fake_log" 2>&1 &
fake_pid=$!
fake_addr=$(wait_listening fake_cloro "$fake_pid" "$fake_log")

CLORO_API_KEY=$api_key setsid "$proxy_bin" serve --listen "$listen" \
  --upstream "http://$fake_addr" --cache-dir ./var/demo-cache \
  --artifact-hosts "$fake_addr" --public-url "http://$listen" >"$proxy_log" 2>&1 &
proxy_pid=$!
proxy_addr=$(wait_listening cloro-proxy "$proxy_pid" "$proxy_log")

p="http://$proxy_addr"
json="-H 'Content-Type: application/json'"
cat <<EOF

fake cloro upstream: http://$fake_addr   (pid $fake_pid, log $fake_log)
cloro-proxy:         $p   (pid $proxy_pid, log $proxy_log)
The proxy holds the API key ($api_key): requests need no Authorization header.

Try:
  # ChatGPT with markdown and an HTML artifact URL
  curl -sS -i $p/v1/monitor/chatgpt $json \\
    -d '{"prompt":"best trail running shoes","country":"US","include":{"markdown":true,"html":true}}'

  # Google Search
  curl -sS -i $p/v1/monitor/google $json -d '{"query":"espresso machines","country":"US"}'

  # A validation error from cloro (empty prompt, lowercase country): 400 VALIDATION_ERROR
  curl -sS -i $p/v1/monitor/chatgpt $json -d '{"prompt":"","country":"us"}'

  # Outside /v1/: the proxy's own 404 envelope
  curl -sS -i $p/nope

  # The proxy's health and counters
  curl -sS -i $p/_proxy/healthz
  curl -sS $p/_proxy/stats

  # What the fake upstream saw (calls, credits charged)
  curl -sS http://$fake_addr/_fake/stats

Follow the logs: tail -f $proxy_log $fake_log
Press Ctrl-C to stop both.
EOF

# Returns when a signal arrives (the trap then exits) or when either process
# exits on its own, which is reported.
set +e
wait -n "$fake_pid" "$proxy_pid"
set -e
if [ -z "$stopping" ]; then
  if ! kill -0 "$proxy_pid" 2>/dev/null; then
    echo "demo: cloro-proxy exited; last lines of $proxy_log:" >&2
    tail -n 20 "$proxy_log" >&2
  else
    echo "demo: fake_cloro exited; last lines of $fake_log:" >&2
    tail -n 20 "$fake_log" >&2
  fi
  exit 1
fi
