#!/usr/bin/env bash
# passthrough.sh BUILD_DIR: what cloro-proxy's pass-through adds to latency.
#
# Starts the fake cloro upstream, cloro-proxy in front of it and (when
# installed) nginx in front of it, all on 127.0.0.1, then runs wrk with
# bench/post_chatgpt.lua against each of them in turn (direct, cloro-proxy,
# nginx, then the next load shape), each run after a short warm-up:
#   -t1 -c1   median latency on one connection (the figure the goal is about)
#   -t2 -c32  throughput
# Prints a table (req/s, p50/p90/p99 in ms, p50 added over direct) and the
# verdict on the goal: cloro-proxy's p50 at -c1 under 0.3 ms above direct.
# The table, raw wrk outputs and server logs go to bench/results/<run>/.
#
# Exit status: 0 when every request of every measured run got a 200 (even if
# the goal is missed: this is a measurement), 1 on any error or non-200, 2 on
# bad usage.
#
# Environment: DURATION (seconds a measured run lasts, default 10), WARMUP
# (seconds, default 1), ROUNDS (times the whole sequence is repeated, default
# 1; the verdict takes the median over rounds), FAKE_BIN (the fake upstream,
# default BUILD_DIR/tests/fake_cloro/fake_cloro), NGINX_BIN (default: nginx
# on PATH or /usr/sbin/nginx; "none" skips the nginx column).
set -euo pipefail

GOAL_MS=0.3
KEY=sk_live_bench

prog=passthrough.sh
# shellcheck source=bench/args.sh
. "$(dirname "${BASH_SOURCE[0]}")/args.sh"
parse_args "$@"

LUA=$BENCH_DIR/post_chatgpt.lua
NGINX_TEMPLATE=$BENCH_DIR/nginx.conf.in
FAKE_BIN=${FAKE_BIN:-$BUILD_DIR/tests/fake_cloro/fake_cloro}
PROXY_BIN=$BUILD_DIR/proxy/cloro-proxy

# --- prerequisites ----------------------------------------------------------
command -v wrk >/dev/null 2>&1 ||
    die "wrk is not installed: 'apt-get install wrk' (or 'make bench', which installs it)"
[ -x "$FAKE_BIN" ] || die "fake upstream not found at $FAKE_BIN: build first (make bench builds it)"
[ -x "$PROXY_BIN" ] || die "cloro-proxy not found at $PROXY_BIN: build first (make bench builds it)"
[ -r "$LUA" ] || die "missing $LUA"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is required"

if [ "${NGINX_BIN:-}" = none ]; then
    NGINX_BIN=
    note "note: NGINX_BIN=none, the nginx column is skipped"
else
    [ -n "${NGINX_BIN:-}" ] || NGINX_BIN=$(command -v nginx 2>/dev/null || true)
    if [ -z "$NGINX_BIN" ] && [ -x /usr/sbin/nginx ]; then
        NGINX_BIN=/usr/sbin/nginx # not on a non-root PATH
    fi
    if [ -z "$NGINX_BIN" ]; then
        note "note: nginx is not installed, the nginx column is skipped ('apt-get install nginx-light')"
    fi
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cloro-bench.XXXXXX")
RUN_ID=passthrough-$(date +%Y%m%d-%H%M%S)
RESULTS=$BENCH_DIR/results/$RUN_ID
mkdir -p "$RESULTS"

# Process bookkeeping, wait_listening, port_open, NO_PROXY_ENV.
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

# --- fake upstream ----------------------------------------------------------
# No limit may trip during the bench: slots, rate window and the credit
# balance (1,000,000 by default: a few hundred thousand calls) are all raised.
# --log-level warn drops the per-request lines; the listening line is always
# printed.
"$FAKE_BIN" --listen 127.0.0.1:0 --api-key "$KEY" --concurrency-limit 100000 \
    --rate-limit 100000000 --latency-ms 0 --credits 1000000000000000 --log-level warn \
    >"$TMP/fake.log" 2>&1 &
PIDS+=($!)
wait_listening "fake upstream" "${PIDS[-1]}" "$TMP/fake.log"
FAKE_ADDR=$LISTEN_ADDR

# --- cloro-proxy ------------------------------------------------------------
# --log-level info prints only the startup lines once the access log is off.
# The cache is off (every request is the same: they would be hits) and so are
# the client-side limits (1,000/s per endpoint by default, below what wrk
# sends here): this measures pass-through; bench/limits.sh measures the
# limiter's own cost.
mkdir -p "$TMP/cache"
"${NO_PROXY_ENV[@]}" CLORO_API_KEY="$KEY" "$PROXY_BIN" serve --listen 127.0.0.1:0 \
    --upstream "http://$FAKE_ADDR" --cache-dir "$TMP/cache" --access-log false --cache false \
    --rate-limit-per-endpoint 0 --max-concurrency 100000 \
    --log-level info >"$TMP/proxy.log" 2>&1 &
PIDS+=($!)
wait_listening "cloro-proxy" "${PIDS[-1]}" "$TMP/proxy.log"
PROXY_ADDR=$LISTEN_ADDR

# --- nginx ------------------------------------------------------------------
NGINX_ADDR=
if [ -n "$NGINX_BIN" ]; then
    start_nginx "$NGINX_TEMPLATE"
fi

# --- run description --------------------------------------------------------
{
    run_header
    echo "wrk: $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2)"
    echo "nginx: $([ -n "$NGINX_BIN" ] && "$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //' || echo skipped)"
    echo "settings: DURATION=${DURATION}s WARMUP=${WARMUP}s ROUNDS=$ROUNDS, wrk --timeout 5s"
    echo "fake upstream: $FAKE_ADDR   cloro-proxy: $PROXY_ADDR   nginx: ${NGINX_ADDR:-skipped}"
} | tee "$RESULTS/env.txt"
echo

# --- measurements -----------------------------------------------------------
TARGETS=(direct cloro-proxy)
declare -A URL=([direct]="http://$FAKE_ADDR" [cloro-proxy]="http://$PROXY_ADDR")
if [ -n "$NGINX_ADDR" ]; then
    TARGETS+=(nginx)
    URL[nginx]="http://$NGINX_ADDR"
fi
LOADS=(c1 c32)
declare -A LOAD_ARGS=([c1]="-t1 -c1" [c32]="-t2 -c32")

ROWS=$TMP/rows.tsv # round load target rps p50 p90 p99 (ms) ok
: >"$ROWS"
FAILED=0



for round in $(seq 1 "$ROUNDS"); do
    for load in "${LOADS[@]}"; do
        for target in "${TARGETS[@]}"; do
            base=$RESULTS/wrk-r$round-$load-$target
            note "round $round/$ROUNDS: $target, ${LOAD_ARGS[$load]}: warm-up ${WARMUP}s, run ${DURATION}s"
            run_wrk "$target" "$load" "$WARMUP" "$base-warmup.txt"
            if [ "$BENCH_OK" != 1 ]; then
                cat "$base-warmup.txt" >&2
                die "$target answered the warm-up with errors or non-200 ($BENCH_LINE)"
            fi
            run_wrk "$target" "$load" "$DURATION" "$base.txt"
            if [ "$BENCH_OK" != 1 ]; then
                FAILED=1
                note "error: $target ($load) had errors or non-200 responses: $BENCH_LINE"
            fi
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$load" "$target" \
                "$(field rps "$BENCH_LINE")" \
                "$(awk -v u="$(field p50_us "$BENCH_LINE")" 'BEGIN{printf "%.3f", u/1000}')" \
                "$(awk -v u="$(field p90_us "$BENCH_LINE")" 'BEGIN{printf "%.3f", u/1000}')" \
                "$(awk -v u="$(field p99_us "$BENCH_LINE")" 'BEGIN{printf "%.3f", u/1000}')" \
                "$BENCH_OK" >>"$ROWS"
        done
    done
done

# --- report -----------------------------------------------------------------
# p50 added = the target's p50 minus direct's p50 in the same round and load.
awk -F'\t' -v rounds="$ROUNDS" '
    { key = $1 SUBSEP $2; if ($3 == "direct") direct[key] = $5; row[NR] = $0 }
    END {
        printf "%-6s %-12s %-9s %10s %9s %9s %9s %14s\n", "round", "target", "load",
            "req/s", "p50 ms", "p90 ms", "p99 ms", "p50 added ms"
        for (i = 1; i <= NR; i++) {
            split(row[i], f, "\t")
            load = f[2] == "c1" ? "-t1 -c1" : "-t2 -c32"
            added = f[3] == "direct" ? "-" : sprintf("%+.3f", f[5] - direct[f[1] SUBSEP f[2]])
            note = f[8] == 1 ? "" : "  ERRORS"
            printf "%-6s %-12s %-9s %10.0f %9.3f %9.3f %9.3f %14s%s\n", f[1], f[3], load,
                f[4], f[5], f[6], f[7], added, note
        }
    }' "$ROWS" >"$TMP/table.txt"

# The verdict: median over rounds of cloro-proxy p50 - direct p50 at -c1.
OVERHEAD=$(awk -F'\t' '
    $2 == "c1" && $3 == "direct" { d[$1] = $5 }
    $2 == "c1" && $3 == "cloro-proxy" { p[$1] = $5 }
    END {
        n = 0
        for (r in p) v[++n] = p[r] - d[r]
        for (i = 2; i <= n; i++)
            for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
        m = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        printf "%.3f", m
    }' "$ROWS")
VERDICT=$(awk -v o="$OVERHEAD" -v g="$GOAL_MS" 'BEGIN { print (o < g) ? "PASS" : "FAIL" }')
FINAL="passthrough p50 overhead: $OVERHEAD ms (goal < $GOAL_MS ms): $VERDICT"
if [ "$ROUNDS" -gt 1 ]; then
    FINAL_NOTE="(median over $ROUNDS rounds of cloro-proxy p50 - direct p50 at -t1 -c1)"
else
    FINAL_NOTE="(cloro-proxy p50 - direct p50 at -t1 -c1)"
fi

publish_results "$FINAL_NOTE" "$FINAL"
echo "$FINAL_NOTE"
if [ "$FAILED" != 0 ]; then
    note "error: some runs had socket errors, timeouts or non-200 responses (marked ERRORS above)"
    echo "$FINAL"
    exit 1
fi
echo "$FINAL"
