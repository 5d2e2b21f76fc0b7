#!/usr/bin/env bash
# limits.sh BUILD_DIR: what cloro-proxy's client-side limits cost and how well
# they keep the upstream's slots busy.
#
# Two measurements, all on 127.0.0.1, with bench/post_chatgpt.lua (every
# request the same; the proxies run with --cache false, so each one goes
# upstream):
#
# 1. Overhead. One fake upstream (--latency-ms 0, nothing can trip) and two
#    cloro-proxy instances in front of it, both --cache false --access-log
#    false:
#      limiter-off  --max-concurrency 100000 --rate-limit-per-endpoint 0
#      limiter-on   --max-concurrency 10 --rate-limit-per-endpoint 100000
#                   --rate-limit-global 100000 (real limits that never make a
#                   request wait at one connection)
#    wrk -t1 -c1 against each, interleaved (the order alternates from round
#    to round), each run after a short warm-up. Verdict: the median over
#    rounds of (limiter-on p50 - limiter-off p50) under 0.05 ms.
#
# 2. Saturation. A second fake upstream (--latency-ms 100, no jitter, a high
#    concurrency limit) and a third cloro-proxy (--cache false
#    --max-concurrency 10 --rate-limit-per-endpoint 0); wrk -t2 -c50, so 40
#    requests wait in the proxy's queue at any time. Utilisation = completed
#    requests/s x 0.100 s / 10 slots. Meanwhile GET /_proxy/stats is sampled
#    about every 200 ms: among the samples with limits.queued > 0, the
#    fraction with limits.in_flight == 10. Verdict: the median utilisation
#    over rounds at least 95 %. The fake's GET /_fake/stats must show
#    max_in_flight <= 10 and no 429 answered, or the run fails.
#
# Prints two tables and the verdicts. The tables, raw wrk outputs, the stats
# samples and server logs go to bench/results/<run>/.
#
# Exit status: 0 when every request of every measured run got a 200 and the
# fakes saw no more than 10 calls at once and answered no 429 (even if a goal
# is missed: this is a measurement), 1 on any error, 2 on bad usage.
#
# Environment: DURATION (seconds a measured run lasts, default 10), WARMUP
# (seconds, default 1), ROUNDS (times the whole sequence is repeated, default
# 1; the verdicts take the median over rounds), FAKE_BIN (the fake upstream,
# default BUILD_DIR/tests/fake_cloro/fake_cloro).
set -euo pipefail

GOAL_OVERHEAD_MS=0.05
GOAL_UTIL_PCT=95
SAT_LATENCY_MS=100 # the saturation fake's latency
SAT_SLOTS=10       # the saturation proxy's --max-concurrency
SAT_CONNS=50       # wrk connections in the saturation runs
SAMPLE_S=0.2       # pause between two /_proxy/stats samples
KEY=sk_live_bench

prog=limits.sh
# shellcheck source=bench/args.sh
. "$(dirname "${BASH_SOURCE[0]}")/args.sh"
parse_args "$@"

LUA=$BENCH_DIR/post_chatgpt.lua
FAKE_BIN=${FAKE_BIN:-$BUILD_DIR/tests/fake_cloro/fake_cloro}
PROXY_BIN=$BUILD_DIR/proxy/cloro-proxy

# --- prerequisites ----------------------------------------------------------
command -v wrk >/dev/null 2>&1 ||
    die "wrk is not installed: 'apt-get install wrk' (or 'make bench-limits', which installs it)"
command -v curl >/dev/null 2>&1 || die "curl is required (stats samples, the fakes' counters)"
[ -x "$FAKE_BIN" ] ||
    die "fake upstream not found at $FAKE_BIN: build first (make bench-limits builds it)"
[ -x "$PROXY_BIN" ] ||
    die "cloro-proxy not found at $PROXY_BIN: build first (make bench-limits builds it)"
[ -r "$LUA" ] || die "missing $LUA"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is required"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cloro-bench.XXXXXX")
RUN_ID=limits-$(date +%Y%m%d-%H%M%S)
RESULTS=$BENCH_DIR/results/$RUN_ID
mkdir -p "$RESULTS"

# Process bookkeeping, wait_listening, port_open, NO_PROXY_ENV.
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
# The same for the script's own curl calls, bounded in time.
CURL=(curl -sS --noproxy '*' --max-time 10)

# Five servers run here, more than the fixed log names lib.sh's cleanup
# copies (fake.log, proxy.log): their logs are written to RESULTS directly.

# --- fake upstreams ---------------------------------------------------------
# start_fake NAME LATENCY_MS: a fake upstream on which nothing can trip
# (slots, rate window, credits all raised; no jitter); sets FAKE_ADDR. Its
# log is RESULTS/fake-NAME.log (--log-level warn: only the listening line).
start_fake() {
    local name=$1 latency=$2
    "$FAKE_BIN" --listen 127.0.0.1:0 --api-key "$KEY" --concurrency-limit 100000 \
        --rate-limit 100000000 --latency-ms "$latency" --jitter-ms 0 \
        --credits 1000000000000000 --log-level warn >"$RESULTS/fake-$name.log" 2>&1 &
    PIDS+=($!)
    wait_listening "fake upstream ($name)" "${PIDS[-1]}" "$RESULTS/fake-$name.log"
    FAKE_ADDR=$LISTEN_ADDR
}
start_fake 0ms 0
FAST_FAKE=$FAKE_ADDR
start_fake "${SAT_LATENCY_MS}ms" "$SAT_LATENCY_MS"
SLOW_FAKE=$FAKE_ADDR

# fake_stats ADDR: the fake's GET /_fake/stats; sets FAKE_MAX (max_in_flight)
# and FAKE_429 (429s it answered, 0 when none).
fake_stats() {
    local json
    json=$("${CURL[@]}" "http://$1/_fake/stats") || die "cannot read http://$1/_fake/stats"
    FAKE_MAX=$(sed -n 's/.*"max_in_flight":[[:space:]]*\([0-9][0-9]*\).*/\1/p' <<<"$json")
    [ -n "$FAKE_MAX" ] || die "no max_in_flight in the fake's /_fake/stats: $json"
    FAKE_429=$(sed -n 's/.*"status":[[:space:]]*{\([^}]*\)}.*/\1/p' <<<"$json" |
        sed -n 's/.*"429":[[:space:]]*\([0-9][0-9]*\).*/\1/p')
    [ -n "$FAKE_429" ] || FAKE_429=0
}

# --- cloro-proxy instances --------------------------------------------------
# start_proxy NAME UPSTREAM ARGS...: one cloro-proxy, cache and access log
# off, its log in RESULTS/proxy-NAME.log (--log-level info prints only the
# startup lines once the access log is off); sets PROXY_ADDR.
start_proxy() {
    local name=$1 upstream=$2
    shift 2
    mkdir -p "$TMP/cache-$name"
    "${NO_PROXY_ENV[@]}" CLORO_API_KEY="$KEY" "$PROXY_BIN" serve --listen 127.0.0.1:0 \
        --upstream "http://$upstream" --cache-dir "$TMP/cache-$name" --access-log false \
        --cache false "$@" --log-level info >"$RESULTS/proxy-$name.log" 2>&1 &
    PIDS+=($!)
    wait_listening "cloro-proxy ($name)" "${PIDS[-1]}" "$RESULTS/proxy-$name.log"
    PROXY_ADDR=$LISTEN_ADDR
}
OFF_ARGS=(--max-concurrency 100000 --rate-limit-per-endpoint 0)
ON_ARGS=(--max-concurrency 10 --rate-limit-per-endpoint 100000 --rate-limit-global 100000)
SAT_ARGS=(--max-concurrency "$SAT_SLOTS" --rate-limit-per-endpoint 0)
start_proxy limiter-off "$FAST_FAKE" "${OFF_ARGS[@]}"
OFF_ADDR=$PROXY_ADDR
start_proxy limiter-on "$FAST_FAKE" "${ON_ARGS[@]}"
ON_ADDR=$PROXY_ADDR
start_proxy saturated "$SLOW_FAKE" "${SAT_ARGS[@]}"
SAT_ADDR=$PROXY_ADDR

# limits_field JSON NAME: a number from the "limits" object of a
# /_proxy/stats answer (its last member, so the first NAME after it is its).
limits_field() {
    sed -n 's/.*"limits":[[:space:]]*{//p' <<<"$1" |
        sed -n "s/^\(.*[,{]\)\{0,1\}\"$2\":[[:space:]]*\([0-9.][0-9.]*\).*/\2/p"
}
proxy_stats() {
    "${CURL[@]}" "http://$1/_proxy/stats" || die "cannot read http://$1/_proxy/stats"
}

# wait_idle ADDR: waits (10 s at most) until the proxy has nothing in flight
# upstream and nothing queued, e.g. the calls a finished wrk run left behind.
wait_idle() {
    local deadline=$((SECONDS + 10)) json
    while :; do
        json=$(proxy_stats "$1")
        if [ "$(limits_field "$json" in_flight)" = 0 ] && [ "$(limits_field "$json" queued)" = 0 ]; then
            return 0
        fi
        [ $SECONDS -lt $deadline ] || die "cloro-proxy at $1 did not drain within 10 s: $json"
        sleep 0.05
    done
}

# --- run description --------------------------------------------------------
{
    run_header
    echo "wrk: $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2)"
    echo "settings: DURATION=${DURATION}s WARMUP=${WARMUP}s ROUNDS=$ROUNDS, wrk --timeout 5s," \
        "stats sampled every ~${SAMPLE_S}s"
    echo "fake upstream 0 ms: $FAST_FAKE   fake upstream ${SAT_LATENCY_MS} ms: $SLOW_FAKE"
    echo "limiter-off: $OFF_ADDR ${OFF_ARGS[*]}"
    echo "limiter-on:  $ON_ADDR ${ON_ARGS[*]}"
    echo "saturated:   $SAT_ADDR ${SAT_ARGS[*]}"
} | tee "$RESULTS/env.txt"
echo

# --- measurements -----------------------------------------------------------
declare -A URL=([limiter-off]="http://$OFF_ADDR" [limiter-on]="http://$ON_ADDR"
    [saturated]="http://$SAT_ADDR")
declare -A LOAD_ARGS=([c1]="-t1 -c1" [sat]="-t2 -c$SAT_CONNS")

ROWS=$TMP/rows.tsv # round target rps p50 p90 p99 (ms) ok
SAT_ROWS=$TMP/sat.tsv # round rps p50 p90 p99 (ms) samples queued full fake_max fake_429 ok
: >"$ROWS"
: >"$SAT_ROWS"
FAILED=0

ms() { awk -v u="$(field "$1" "$BENCH_LINE")" 'BEGIN{printf "%.3f", u/1000}'; }


# warm_and_run TARGET LOAD BASE: the warm-up (which must be clean) then the
# measured run, its output in BASE.txt.
warm_and_run() {
    local target=$1 load=$2 base=$3
    note "round $round/$ROUNDS: $target, ${LOAD_ARGS[$load]}: warm-up ${WARMUP}s, run ${DURATION}s"
    run_wrk "$target" "$load" "$WARMUP" "$base-warmup.txt"
    if [ "$BENCH_OK" != 1 ]; then
        cat "$base-warmup.txt" >&2
        die "$target answered the warm-up with errors or non-200 ($BENCH_LINE)"
    fi
    if [ "$load" = sat ]; then
        wait_idle "$SAT_ADDR" # the warm-up's abandoned calls give their slots back
        start_sampler "$base-stats.jsonl"
    fi
    run_wrk "$target" "$load" "$DURATION" "$base.txt"
    if [ "$load" = sat ]; then
        stop_sampler
    fi
    if [ "$BENCH_OK" != 1 ]; then
        FAILED=1
        note "error: $target (${LOAD_ARGS[$load]}) had errors or non-200 responses: $BENCH_LINE"
    fi
}

# start_sampler OUT: GET /_proxy/stats of the saturated proxy about every
# SAMPLE_S seconds, one answer a line in OUT (an empty line when curl failed),
# until stop_sampler; bounded by a sample count in case it is never stopped.
SAMPLER_PID=
start_sampler() {
    local out=$1 max=$((DURATION * 10 + 100))
    rm -f "$TMP/sampler.stop"
    (
        i=0
        while [ ! -e "$TMP/sampler.stop" ] && [ $i -lt $max ]; do
            curl -sS --noproxy '*' --max-time 1 "http://$SAT_ADDR/_proxy/stats" 2>/dev/null || true
            echo
            i=$((i + 1))
            sleep "$SAMPLE_S"
        done
    ) >"$out" &
    SAMPLER_PID=$!
    PIDS+=("$SAMPLER_PID")
}
stop_sampler() {
    touch "$TMP/sampler.stop"
    wait "$SAMPLER_PID" 2>/dev/null || true
}

# count_samples FILE: "SAMPLES QUEUED FULL": the stats answers read, those
# with limits.queued > 0, and of these the ones with limits.in_flight ==
# SAT_SLOTS.
count_samples() {
    awk -v slots="$SAT_SLOTS" '
        function num(s, name,   m) {
            if (!match(s, "\"" name "\":[[:space:]]*[0-9]+")) return -1
            m = substr(s, RSTART, RLENGTH); sub(/.*:[[:space:]]*/, "", m); return m + 0
        }
        {
            i = index($0, "\"limits\":")
            if (i == 0) next
            s = substr($0, i)
            f = num(s, "in_flight"); q = num(s, "queued")
            if (f < 0 || q < 0) next
            n++
            if (q > 0) { queued++; if (f == slots) full++ }
        }
        END { printf "%d %d %d\n", n, queued, full }' "$1"
}

for round in $(seq 1 "$ROUNDS"); do
    # 1. overhead at one connection, the order alternating from round to round
    if [ $((round % 2)) = 1 ]; then order=(limiter-off limiter-on); else order=(limiter-on limiter-off); fi
    for target in "${order[@]}"; do
        warm_and_run "$target" c1 "$RESULTS/wrk-r$round-c1-$target"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$target" "$(field rps "$BENCH_LINE")" \
            "$(ms p50_us)" "$(ms p90_us)" "$(ms p99_us)" "$BENCH_OK" >>"$ROWS"
    done
    fake_stats "$FAST_FAKE"
    if [ "$FAKE_429" != 0 ]; then
        FAILED=1
        note "error: the 0 ms fake upstream answered $FAKE_429 429s (retried by the proxies)"
    fi

    # 2. saturation
    base=$RESULTS/wrk-r$round-sat
    warm_and_run saturated sat "$base"
    read -r n_samples n_queued n_full < <(count_samples "$base-stats.jsonl")
    fake_stats "$SLOW_FAKE"
    ok=$BENCH_OK
    if [ "$FAKE_MAX" -gt "$SAT_SLOTS" ]; then
        ok=0
        FAILED=1
        note "error: the ${SAT_LATENCY_MS} ms fake saw $FAKE_MAX calls at once (limit $SAT_SLOTS)"
    fi
    if [ "$FAKE_429" != 0 ]; then
        ok=0
        FAILED=1
        note "error: the ${SAT_LATENCY_MS} ms fake upstream answered $FAKE_429 429s"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$(field rps "$BENCH_LINE")" \
        "$(ms p50_us)" "$(ms p90_us)" "$(ms p99_us)" "$n_samples" "$n_queued" "$n_full" \
        "$FAKE_MAX" "$FAKE_429" "$ok" >>"$SAT_ROWS"
done

# The proxies' limits counters at the end, kept and checked.
for target in limiter-off limiter-on saturated; do
    addr=${URL[$target]#http://}
    json=$(proxy_stats "$addr")
    echo "$json" >"$RESULTS/stats-$target.json"
    for k in rejected queue_overflows queue_timeouts upstream_429; do
        v=$(limits_field "$json" "$k")
        if [ "$v" != 0 ]; then
            FAILED=1
            note "error: $target: limits.$k is ${v:-missing} at the end (expected 0)"
        fi
    done
done
SAT_LIMIT=$(limits_field "$(cat "$RESULTS/stats-saturated.json")" concurrency_limit)
if [ "$SAT_LIMIT" != "$SAT_SLOTS" ]; then
    FAILED=1
    note "error: the saturated proxy's limits.concurrency_limit is ${SAT_LIMIT:-missing}, not $SAT_SLOTS"
fi
ON_WAIT_P99=$(sed -n 's/.*"queue_wait_ms":[[:space:]]*{[^}]*"p99":[[:space:]]*\([0-9.]*\).*/\1/p' \
    "$RESULTS/stats-limiter-on.json")
ON_WAIT_P99=$(awk -v v="${ON_WAIT_P99:-0}" 'BEGIN { printf "%.3f", v }')

# --- report -----------------------------------------------------------------
# p50 added = limiter-on's p50 minus limiter-off's p50 in the same round.
awk -F'\t' '
    $2 == "limiter-off" { off[$1] = $4 }
    { row[NR] = $0 }
    END {
        printf "%-6s %-12s %-9s %10s %9s %9s %9s %14s\n", "round", "target", "load",
            "req/s", "p50 ms", "p90 ms", "p99 ms", "p50 added ms"
        for (i = 1; i <= NR; i++) {
            split(row[i], f, "\t")
            added = f[2] == "limiter-off" ? "-" : sprintf("%+.3f", f[4] - off[f[1]])
            note = f[7] == 1 ? "" : "  ERRORS"
            printf "%-6s %-12s %-9s %10.0f %9.3f %9.3f %9.3f %14s%s\n", f[1], f[2], "-t1 -c1",
                f[3], f[4], f[5], f[6], added, note
        }
    }' "$ROWS" >"$TMP/table.txt"
awk -F'\t' -v lat="$SAT_LATENCY_MS" -v slots="$SAT_SLOTS" -v load="-t2 -c$SAT_CONNS" '
    BEGIN {
        printf "%-6s %-9s %8s %9s %9s %8s %8s %9s %12s %9s %9s\n", "round", "load", "req/s",
            "p50 ms", "p99 ms", "util %", "samples", "queued>0", "slots full", "fake max", "fake 429"
    }
    {
        full = $7 > 0 ? sprintf("%d (%.0f%%)", $8, 100 * $8 / $7) : "-"
        note = $11 == 1 ? "" : "  ERRORS"
        printf "%-6s %-9s %8.1f %9.3f %9.3f %8.1f %8d %9d %12s %9d %9d%s\n", $1, load, $2, $3,
            $5, $2 * lat / 1000 / slots * 100, $6, $7, full, $9, $10, note
    }' "$SAT_ROWS" >"$TMP/sat-table.txt"

# median_of: the median of the numbers on stdin, one a line.
median_of() {
    sort -g | awk '{ v[++n] = $1 } END { printf "%.6f", n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }'
}
OVERHEAD=$(awk -F'\t' '$2 == "limiter-off" { a[$1] = $4 } $2 == "limiter-on" { b[$1] = $4 }
    END { for (r in b) print b[r] - a[r] }' "$ROWS" | median_of)
OVERHEAD=$(awk -v v="$OVERHEAD" 'BEGIN { printf "%.3f", v }')
OVERHEAD_VERDICT=$(awk -v o="$OVERHEAD" -v g="$GOAL_OVERHEAD_MS" 'BEGIN { print (o < g) ? "PASS" : "FAIL" }')
UTIL=$(awk -F'\t' -v lat="$SAT_LATENCY_MS" -v slots="$SAT_SLOTS" \
    '{ print $2 * lat / 1000 / slots * 100 }' "$SAT_ROWS" | median_of)
UTIL=$(awk -v v="$UTIL" 'BEGIN { printf "%.1f", v }')
UTIL_VERDICT=$(awk -v u="$UTIL" -v g="$GOAL_UTIL_PCT" 'BEGIN { print (u >= g) ? "PASS" : "FAIL" }')
read -r QUEUED_ALL FULL_ALL < <(awk -F'\t' '{ q += $7; f += $8 } END { print q + 0, f + 0 }' "$SAT_ROWS")
FULL_PCT=$(awk -v q="$QUEUED_ALL" -v f="$FULL_ALL" 'BEGIN { if (q > 0) printf "%.1f %%", 100 * f / q; else print "n/a" }')
CEILING=$(awk -v d="$DURATION" -v l="$SAT_LATENCY_MS" 'BEGIN { printf "%.1f", 100 * (1 - l / 1000 / d) }')

if [ "$ROUNDS" -gt 1 ]; then over="median over $ROUNDS rounds"; else over="one round"; fi
NOTE1="(limiter-on p50 - limiter-off p50 at -t1 -c1, $over; limiter-on's queue wait p99 over"
NOTE1+=" the whole run: $ON_WAIT_P99 ms)"
LAT_S=$(awk -v l="$SAT_LATENCY_MS" 'BEGIN { printf "%.3f", l / 1000 }')
NOTE2="(utilisation = req/s x $LAT_S s / $SAT_SLOTS slots at"
NOTE2+=" -t2 -c$SAT_CONNS, $over; at most $CEILING % in a ${DURATION} s run, nothing completes"
NOTE2+=" in its first $SAT_LATENCY_MS ms; slots full (limits.in_flight == $SAT_SLOTS) in"
NOTE2+=" $FULL_ALL of $QUEUED_ALL stats samples with limits.queued > 0, all rounds: $FULL_PCT)"
FINAL1="limiter p50 overhead: $OVERHEAD ms (goal < $GOAL_OVERHEAD_MS ms): $OVERHEAD_VERDICT"
FINAL2="limiter utilisation under saturation: $UTIL % (goal >= $GOAL_UTIL_PCT %): $UTIL_VERDICT"

{
    cat "$TMP/table.txt"
    echo
    cat "$TMP/sat-table.txt"
    echo
    echo "util %: completed req/s x ${SAT_LATENCY_MS} ms / $SAT_SLOTS slots; samples: /_proxy/stats answers"
    echo "read during the run; slots full: of those with limits.queued > 0, limits.in_flight == $SAT_SLOTS;"
    echo "fake max / fake 429: the ${SAT_LATENCY_MS} ms fake's max_in_flight and 429s since it started"
    echo "$NOTE1"
    echo "$NOTE2"
    echo "$FINAL1"
    echo "$FINAL2"
} >"$RESULTS/table.txt"
cat "$RESULTS/env.txt" "$RESULTS/table.txt" >"$RESULTS/summary.txt"
ln -sfn "$RUN_ID" "$BENCH_DIR/results/latest"

cat "$TMP/table.txt"
echo
cat "$TMP/sat-table.txt"
echo
echo "results: $RESULTS"
echo "$NOTE1"
echo "$NOTE2"
if [ "$FAILED" != 0 ]; then
    note "error: some runs had socket errors, timeouts or non-200 responses, the fake saw more" \
        "than $SAT_SLOTS calls at once or answered 429, or a proxy refused calls (see above)"
    echo "$FINAL1"
    echo "$FINAL2"
    exit 1
fi
echo "$FINAL1"
echo "$FINAL2"
