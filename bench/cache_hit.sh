#!/usr/bin/env bash
# cache_hit.sh BUILD_DIR: cloro-proxy's cache hits side by side with nginx's.
#
# Starts the fake cloro upstream, cloro-proxy in front of it (its cache on, in
# a temp dir) and nginx as a caching proxy in front of it (nginx-cache.conf.in:
# proxy_cache_methods POST, key "$request_uri|$request_body"), all on
# 127.0.0.1, one worker each. Warms each cache with one request and checks the
# next answer is a hit (cloro-proxy: X-Cache: HIT, nginx: X-Cache-Status: HIT),
# then runs wrk with bench/post_cache_hit.lua against them interleaved
# (cloro-proxy, nginx, for each load shape, ROUNDS times), each run after a
# short warm-up:
#   -t1 -c1   latency on one connection (the p99 goal)
#   -t2 -c32  throughput (the req/s goal)
# The fake's request counter (GET /_fake/stats, requests_total) is read before
# and after every run: any /v1 request reaching it means a run was not served
# from a cache, and fails the bench; so does any response that is not a 200
# or not marked as a hit. Prints a table (req/s, p50/p90/p99 in ms, upstream
# requests during the run) and the verdicts on the goals, medians over rounds:
#   cache-hit req/s ratio cloro-proxy/nginx at -t2 -c32 >= 1.0
#   cache-hit p99 of cloro-proxy at -t1 -c1 no worse than nginx's
# The table, raw wrk outputs and server logs go to bench/results/<run>/.
#
# Exit status: 0 when every request of every run was a 200 cache hit and the
# upstream saw none of them (even if a goal is missed: this is a measurement),
# 1 on any error, 2 on bad usage.
#
# Environment: DURATION (seconds a measured run lasts, default 10), WARMUP
# (seconds, default 1), ROUNDS (times the whole sequence is repeated, default
# 1; the verdicts take the median over rounds), FAKE_BIN (the fake upstream,
# default BUILD_DIR/tests/fake_cloro/fake_cloro), NGINX_BIN (default: nginx
# on PATH or /usr/sbin/nginx; required, this bench is a comparison).
set -euo pipefail

KEY=sk_live_bench
BODY='{"prompt":"bench prompt","country":"US"}'
API_PATH=/v1/monitor/chatgpt

prog=cache_hit.sh
# shellcheck source=bench/args.sh
. "$(dirname "${BASH_SOURCE[0]}")/args.sh"
parse_args "$@"

LUA=$BENCH_DIR/post_cache_hit.lua
NGINX_TEMPLATE=$BENCH_DIR/nginx-cache.conf.in
FAKE_BIN=${FAKE_BIN:-$BUILD_DIR/tests/fake_cloro/fake_cloro}
PROXY_BIN=$BUILD_DIR/proxy/cloro-proxy

# --- prerequisites ----------------------------------------------------------
command -v wrk >/dev/null 2>&1 ||
    die "wrk is not installed: 'apt-get install wrk' (or 'make bench-cache', which installs it)"
command -v curl >/dev/null 2>&1 || die "curl is required (warm-up, hit checks, upstream counter)"
[ -x "$FAKE_BIN" ] ||
    die "fake upstream not found at $FAKE_BIN: build first (make bench-cache builds it)"
[ -x "$PROXY_BIN" ] ||
    die "cloro-proxy not found at $PROXY_BIN: build first (make bench-cache builds it)"
[ -r "$LUA" ] || die "missing $LUA"
[ -r "$NGINX_TEMPLATE" ] || die "missing $NGINX_TEMPLATE"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is required"

[ -n "${NGINX_BIN:-}" ] || NGINX_BIN=$(command -v nginx 2>/dev/null || true)
if [ -z "$NGINX_BIN" ] && [ -x /usr/sbin/nginx ]; then
    NGINX_BIN=/usr/sbin/nginx # not on a non-root PATH
fi
if [ -z "$NGINX_BIN" ] || [ ! -x "$NGINX_BIN" ]; then
    die "nginx is required for this comparison: 'apt-get install nginx-light' (or 'make bench-cache')"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cloro-bench.XXXXXX")
RUN_ID=cache-hit-$(date +%Y%m%d-%H%M%S)
RESULTS=$BENCH_DIR/results/$RUN_ID
mkdir -p "$RESULTS"

# Process bookkeeping, wait_listening, port_open, NO_PROXY_ENV.
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
# The same for the script's own curl calls, bounded in time.
CURL=(curl -sS --noproxy '*' --max-time 10)

# --- fake upstream ----------------------------------------------------------
# No limit may trip: slots, rate window and the credit balance are all raised
# (the fake's default latency applies; only the warm-up requests reach it).
# --log-level warn drops the per-request lines; the listening line is always
# printed.
"$FAKE_BIN" --listen 127.0.0.1:0 --api-key "$KEY" --concurrency-limit 100000 \
    --rate-limit 100000000 --credits 1000000000000000 --log-level warn \
    >"$TMP/fake.log" 2>&1 &
PIDS+=($!)
wait_listening "fake upstream" "${PIDS[-1]}" "$TMP/fake.log"
FAKE_ADDR=$LISTEN_ADDR

# upstream_count: the fake's requests_total (every request to a /v1/ path).
upstream_count() {
    local json n
    json=$("${CURL[@]}" "http://$FAKE_ADDR/_fake/stats") ||
        die "cannot read http://$FAKE_ADDR/_fake/stats"
    n=$(sed -n 's/.*"requests_total":[[:space:]]*\([0-9][0-9]*\).*/\1/p' <<<"$json")
    [ -n "$n" ] || die "no requests_total in the fake's /_fake/stats: $json"
    echo "$n"
}

# --- cloro-proxy ------------------------------------------------------------
# --log-level info prints only the startup lines once the access log is off.
# The cache is on by default; it lives in the temp dir.
mkdir -p "$TMP/cache"
"${NO_PROXY_ENV[@]}" CLORO_API_KEY="$KEY" "$PROXY_BIN" serve --listen 127.0.0.1:0 \
    --upstream "http://$FAKE_ADDR" --cache-dir "$TMP/cache" --access-log false \
    --log-level info >"$TMP/proxy.log" 2>&1 &
PIDS+=($!)
wait_listening "cloro-proxy" "${PIDS[-1]}" "$TMP/proxy.log"
PROXY_ADDR=$LISTEN_ADDR

# --- nginx ------------------------------------------------------------------
start_nginx "$NGINX_TEMPLATE"

TARGETS=(cloro-proxy nginx)
declare -A URL=([cloro-proxy]="http://$PROXY_ADDR" [nginx]="http://$NGINX_ADDR")
declare -A HIT_HEADER=([cloro-proxy]=X-Cache [nginx]=X-Cache-Status)

# --- warm each cache with one request, then check the next one is a hit -----
# post TARGET OUT: the bench request with curl; sets STATUS and CACHE (the
# value of the target's hit header, "-" when absent). Headers in OUT.headers.
post() {
    local target=$1 out=$2
    STATUS=$("${CURL[@]}" -o "$out.body" -D "$out.headers" -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' -H "Authorization: Bearer $KEY" \
        --data-binary "$BODY" "${URL[$target]}$API_PATH") ||
        die "$target: the request to ${URL[$target]}$API_PATH failed"
    CACHE=$(sed -n "s/^${HIT_HEADER[$target]}:[[:space:]]*\([^[:space:]]*\).*/\1/Ip" \
        "$out.headers" | tr -d '\r' | head -n 1)
    [ -n "$CACHE" ] || CACHE=-
}

for target in "${TARGETS[@]}"; do
    n0=$(upstream_count)
    post "$target" "$RESULTS/warm-$target"
    n1=$(upstream_count)
    [ "$STATUS" = 200 ] || {
        cat "$RESULTS/warm-$target.headers" "$RESULTS/warm-$target.body" >&2 || true
        die "$target answered the warm-up request with $STATUS (response above)"
    }
    [ "$n1" -eq $((n0 + 1)) ] ||
        die "$target: the warm-up request reached the upstream $((n1 - n0)) times, expected once"
    note "$target: warm-up request: 200, ${HIT_HEADER[$target]}: $CACHE, upstream +1"
    post "$target" "$RESULTS/check-$target"
    n2=$(upstream_count)
    if [ "$STATUS" != 200 ] || [ "$CACHE" != HIT ] || [ "$n2" -ne "$n1" ]; then
        cat "$RESULTS/check-$target.headers" >&2 || true
        die "$target: the request after the warm-up is not a cache hit: status $STATUS," \
            "${HIT_HEADER[$target]}: $CACHE, upstream requests +$((n2 - n1)) (headers above)"
    fi
    note "$target: check request: 200, ${HIT_HEADER[$target]}: HIT, upstream +0"
done
cmp -s "$RESULTS/check-cloro-proxy.body" "$RESULTS/check-nginx.body" ||
    note "note: the two cached bodies differ (the fake's answers differ per call); sizes" \
        "$(wc -c <"$RESULTS/check-cloro-proxy.body") and $(wc -c <"$RESULTS/check-nginx.body") bytes"

# --- run description --------------------------------------------------------
{
    run_header
    echo "wrk: $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2)"
    echo "nginx: $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //')"
    echo "settings: DURATION=${DURATION}s WARMUP=${WARMUP}s ROUNDS=$ROUNDS, wrk --timeout 5s"
    echo "cached response: $(wc -c <"$RESULTS/check-cloro-proxy.body") bytes of body"
    echo "fake upstream: $FAKE_ADDR   cloro-proxy: $PROXY_ADDR   nginx: $NGINX_ADDR"
} | tee "$RESULTS/env.txt"
echo

# --- measurements -----------------------------------------------------------
LOADS=(c1 c32)
declare -A LOAD_ARGS=([c1]="-t1 -c1" [c32]="-t2 -c32")

ROWS=$TMP/rows.tsv # round load target rps p50 p90 p99 (ms) ok upstream
: >"$ROWS"
FAILED=0


# run_hits TARGET LOAD SECONDS OUT: run_wrk (lib.sh) that also fails on a
# response not marked as a cache hit, and sets UPSTREAM (/v1 requests the fake
# saw meanwhile, which must be none).
run_hits() {
    local before
    before=$(upstream_count)
    run_wrk "$@" nonhit
    UPSTREAM=$(($(upstream_count) - before))
    if [ "$UPSTREAM" != 0 ]; then
        BENCH_OK=0
    fi
}

for round in $(seq 1 "$ROUNDS"); do
    for load in "${LOADS[@]}"; do
        for target in "${TARGETS[@]}"; do
            base=$RESULTS/wrk-r$round-$load-$target
            note "round $round/$ROUNDS: $target, ${LOAD_ARGS[$load]}: warm-up ${WARMUP}s, run ${DURATION}s"
            run_hits "$target" "$load" "$WARMUP" "$base-warmup.txt"
            if [ "$BENCH_OK" != 1 ]; then
                cat "$base-warmup.txt" >&2
                die "$target answered the warm-up with errors, non-200s or non-hits," \
                    "upstream requests +$UPSTREAM ($BENCH_LINE)"
            fi
            run_hits "$target" "$load" "$DURATION" "$base.txt"
            if [ "$BENCH_OK" != 1 ]; then
                FAILED=1
                note "error: $target ($load) had errors, non-200s or non-hits, or reached the" \
                    "upstream (+$UPSTREAM requests): $BENCH_LINE"
            fi
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$load" "$target" \
                "$(field rps "$BENCH_LINE")" \
                "$(awk -v u="$(field p50_us "$BENCH_LINE")" 'BEGIN{printf "%.3f", u/1000}')" \
                "$(awk -v u="$(field p90_us "$BENCH_LINE")" 'BEGIN{printf "%.3f", u/1000}')" \
                "$(awk -v u="$(field p99_us "$BENCH_LINE")" 'BEGIN{printf "%.3f", u/1000}')" \
                "$BENCH_OK" "$UPSTREAM" >>"$ROWS"
        done
    done
done

# --- report -----------------------------------------------------------------
awk -F'\t' '
    BEGIN {
        printf "%-6s %-12s %-9s %10s %9s %9s %9s %9s\n", "round", "target", "load",
            "req/s", "p50 ms", "p90 ms", "p99 ms", "upstream"
    }
    {
        load = $2 == "c1" ? "-t1 -c1" : "-t2 -c32"
        note = $8 == 1 ? "" : "  ERRORS"
        printf "%-6s %-12s %-9s %10.0f %9.3f %9.3f %9.3f %9d%s\n", $1, $3, load,
            $4, $5, $6, $7, $9, note
    }' "$ROWS" >"$TMP/table.txt"

# median LOAD COL MODE: the median over rounds, at load shape LOAD, of column
# COL (4 req/s, 7 p99 ms) of cloro-proxy's rows (MODE proxy), of nginx's (MODE
# nginx) or of their per-round ratio cloro-proxy/nginx (MODE ratio).
median() {
    awk -F'\t' -v load="$1" -v col="$2" -v mode="$3" '
        $2 == load && $3 == "cloro-proxy" { p[$1] = $col }
        $2 == load && $3 == "nginx" { q[$1] = $col }
        END {
            n = 0
            for (r in p) v[++n] = mode == "ratio" ? (q[r] > 0 ? p[r] / q[r] : 0) : \
                                  mode == "nginx" ? q[r] : p[r]
            for (i = 2; i <= n; i++)
                for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
            m = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            printf mode == "ratio" ? "%.2f" : "%.3f", m
        }' "$ROWS"
}

# Verdicts, compared as printed: the req/s ratio (per round, then the median)
# at -t2 -c32; the p99s (median of each target's) at -t1 -c1.
RATIO=$(median c32 4 ratio)
RATIO_VERDICT=$(awk -v r="$RATIO" 'BEGIN { print (r >= 1.0) ? "PASS" : "FAIL" }')
P99_PROXY=$(median c1 7 proxy)
P99_NGINX=$(median c1 7 nginx)
P99_VERDICT=$(awk -v a="$P99_PROXY" -v b="$P99_NGINX" 'BEGIN { print (a <= b) ? "PASS" : "FAIL" }')
# For information, the other shape of each.
RATIO_C1=$(median c1 4 ratio)
P99_PROXY_C32=$(median c32 7 proxy)
P99_NGINX_C32=$(median c32 7 nginx)

if [ "$ROUNDS" -gt 1 ]; then over="median over $ROUNDS rounds"; else over="one round"; fi
FINAL_NOTE="(req/s ratio at -t2 -c32, p99 at -t1 -c1; $over; also req/s ratio at -t1 -c1:"
FINAL_NOTE+=" $RATIO_C1, p99 at -t2 -c32: $P99_PROXY_C32 ms vs $P99_NGINX_C32 ms)"
FINAL1="cache-hit req/s ratio cloro-proxy/nginx: $RATIO (goal >= 1.0): $RATIO_VERDICT"
FINAL2="cache-hit p99 cloro-proxy vs nginx: $P99_PROXY ms vs $P99_NGINX ms (goal: no worse): $P99_VERDICT"

publish_results "upstream: /v1 requests the fake upstream saw during the run (must be 0)" \
    "$FINAL_NOTE" \
    "$FINAL1" \
    "$FINAL2"
echo "$FINAL_NOTE"
if [ "$FAILED" != 0 ]; then
    note "error: some runs had socket errors, timeouts, non-200s or non-hits, or reached the" \
        "upstream (marked ERRORS above)"
    echo "$FINAL1"
    echo "$FINAL2"
    exit 1
fi
echo "$FINAL1"
echo "$FINAL2"
