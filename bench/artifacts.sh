#!/usr/bin/env bash
# artifacts.sh BUILD_DIR: does HTML artifact capture keep up with the answers?
#
# The figure: 1000 answers with artifacts, all captured within 10 s of the
# last answer. For each run, all on 127.0.0.1: a fresh fake cloro upstream
# (nothing can trip; it mints html URLs on its own host and serves them) and
# a fresh cloro-proxy in front of it (its cache on, in a temp dir,
# --artifact-hosts the fake's host:port, --max-concurrency 64, the key from
# CLORO_API_KEY). wrk (-t2 -c64, bench/post_artifacts.lua) sends 1000
# distinct POST /v1/monitor/chatgpt requests with "include":{"html":true} as
# fast as the proxy answers them, each one exactly once, and records when the
# last answer arrived. Meanwhile, from the first request on, GET
# /_proxy/stats is read every 100 ms until artifacts.captured reaches 1000 (or
# captured + lost does), 60 s after the last answer at most. The capture lag
# is the time from the last answer to the first stats answer that showed all
# 1000 captured.
#
# Each round runs twice: --artifact-concurrency 4 (the default; the figure)
# and 16 (for information). Prints one row per run (answers/s, the lag, the
# downloader's counters, the fake's artifact_fetches) and the verdict on the
# median lag at concurrency 4 over rounds. The table, raw wrk outputs, the
# stats samples and server logs go to bench/results/<run>/.
#
# Exit status: 0 when every run got its 1000 answers (200, stored, each one a
# call upstream and a download job), even if the goal is missed or artifacts
# were lost or never captured (this is a measurement: the table says so);
# 1 on any error; 2 on bad usage.
#
# Environment: ROUNDS (times the pair of runs is repeated, default 1; the
# verdict takes the median over rounds), ANSWERS (answers a run, default 1000),
# FAKE_BIN (the fake upstream, default BUILD_DIR/tests/fake_cloro/fake_cloro).
set -euo pipefail

GOAL_S=10
DEADLINE_S=60    # how long after the last answer the stats are polled at most
POLL_S=0.1       # time between two /_proxy/stats samples
POLL_US=100000   # the same in µs
CONCS=(4 16)     # --artifact-concurrency of the runs; the first is the figure's
THREADS=2        # wrk -t
CONNS=64         # wrk -c, as many as the proxy's --max-concurrency
MAX_CONCURRENCY=64
WRK_BOUND_S=120  # wrk -d: the answers must all be in by then
KEY=sk_live_bench

prog=artifacts.sh
# shellcheck source=bench/args.sh
. "$(dirname "${BASH_SOURCE[0]}")/args.sh"
parse_args "$@" -- ANSWERS=1000
# shellcheck disable=SC2153 # ANSWERS is set by parse_args
# The fake keeps its last 4096 artifacts; the proxy scans its queue linearly.
[ "$ANSWERS" -le 4000 ] || { echo "$prog: ANSWERS must be at most 4000" >&2; exit 2; }
[ "$ANSWERS" -ge "$THREADS" ] || { echo "$prog: ANSWERS must be at least $THREADS" >&2; exit 2; }

LUA=$BENCH_DIR/post_artifacts.lua
FAKE_BIN=${FAKE_BIN:-$BUILD_DIR/tests/fake_cloro/fake_cloro}
PROXY_BIN=$BUILD_DIR/proxy/cloro-proxy

# --- prerequisites ----------------------------------------------------------
command -v wrk >/dev/null 2>&1 ||
    die "wrk is not installed: 'apt-get install wrk' (or 'make bench-artifacts', which installs it)"
command -v curl >/dev/null 2>&1 || die "curl is required (stats samples, the fake's counters)"
[ -x "$FAKE_BIN" ] ||
    die "fake upstream not found at $FAKE_BIN: build first (make bench-artifacts builds it)"
[ -x "$PROXY_BIN" ] ||
    die "cloro-proxy not found at $PROXY_BIN: build first (make bench-artifacts builds it)"
[ -r "$LUA" ] || die "missing $LUA"
[ -n "${EPOCHREALTIME:-}" ] || die "bash 5 or later is required (EPOCHREALTIME)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cloro-bench.XXXXXX")
RUN_ID=artifacts-$(date +%Y%m%d-%H%M%S)
RESULTS=$BENCH_DIR/results/$RUN_ID
mkdir -p "$RESULTS"

# Process bookkeeping, start_fake, start_proxy, stop_pid, forget_pid.
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
# The same for the script's own curl calls, bounded in time.
CURL=(curl -sS --noproxy '*' --max-time 10)

# Every run has its own fake and proxy, more than the fixed log names lib.sh's
# cleanup copies (fake.log, proxy.log): their logs are written to RESULTS.

# start_servers TAG CONC: a fresh fake upstream and a fresh cloro-proxy with
# --artifact-concurrency CONC (an empty cache, no jobs); sets FAKE_PID,
# FAKE_ADDR, PROXY_PID, PROXY_ADDR. Logs: RESULTS/{fake,proxy}-TAG.log.
start_servers() {
    local tag=$1 conc=$2
    # Nothing may trip: slots, rate window and credits are raised; latency 0
    # (the default); artifacts live an hour.
    start_fake "$tag" --concurrency-limit 100000 --rate-limit 100000000 \
        --credits 1000000000000000 --log-level warn --artifact-ttl-s 3600
    # The proxy's log has the startup lines (and any artifact_lost).
    start_proxy "$tag" --artifact-hosts "$FAKE_ADDR" --max-concurrency "$MAX_CONCURRENCY" \
        --artifact-concurrency "$conc"
}

# json_num JSON OBJECT NAME: a number from OBJECT ("artifacts", "requests",
# or "" for the top level) of a stats answer: the first NAME after it.
json_num() {
    local s=$1
    if [ -n "$2" ]; then
        s=$(sed -n "s|.*\"$2\":[[:space:]]*{||p" <<<"$s")
    fi
    sed -n "s|^\(.*[,{]\)\{0,1\}\"$3\":[[:space:]]*\([0-9][0-9]*\).*|\2|p" <<<"$s" | head -n 1
}

# --- run description --------------------------------------------------------
{
    run_header
    echo "wrk: $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2)"
    echo "settings: ROUNDS=$ROUNDS ANSWERS=$ANSWERS, wrk -t$THREADS -c$CONNS --timeout 60s," \
        "proxy --max-concurrency $MAX_CONCURRENCY, --artifact-concurrency ${CONCS[*]}," \
        "stats polled every ${POLL_S}s for ${DEADLINE_S}s at most after the last answer"
    echo "every run: a fresh fake upstream and a fresh cloro-proxy (empty cache) on 127.0.0.1"
} | tee "$RESULTS/env.txt"
echo

# --- measurements -----------------------------------------------------------
# round conc answers first_send last_answer status lag_s(or -) captured lost
# pending bytes downloads failures retries oversized fetches upstream ok
ROWS=$TMP/rows.tsv
: >"$ROWS"
FAILED=0


# artifacts_counts JSON: sets CAPTURED, LOST and PENDING from the "artifacts"
# object of a /_proxy/stats answer (empty when missing). No fork: the sampler
# calls it every POLL_S.
artifacts_counts() {
    CAPTURED='' LOST='' PENDING=''
    [[ $1 =~ \"artifacts\":\{([^}]*)\} ]] || return 0
    local obj=${BASH_REMATCH[1]}
    [[ $obj =~ \"captured\":([0-9]+) ]] && CAPTURED=${BASH_REMATCH[1]}
    [[ $obj =~ \"lost\":([0-9]+) ]] && LOST=${BASH_REMATCH[1]}
    [[ $obj =~ \"pending\":([0-9]+) ]] && PENDING=${BASH_REMATCH[1]}
    return 0
}

# start_sampler OUT: GET /_proxy/stats every POLL_S s from the start of the
# answers on, one "EPOCHREALTIME JSON" a line in OUT (the time taken when the
# answer arrived), until captured + lost reaches ANSWERS or stop_sampler;
# bounded by a sample count in case neither happens.
SAMPLER_PID=
start_sampler() {
    local out=$1 max=$(((WRK_BOUND_S + DEADLINE_S + 20) * 10))
    rm -f "$TMP/sampler.stop"
    (
        i=0
        next=${EPOCHREALTIME/./} # µs: the samples keep a POLL_US cadence
        while [ ! -e "$TMP/sampler.stop" ] && [ $i -lt $max ]; do
            json=$(curl -sS --noproxy '*' --max-time 1 "http://$PROXY_ADDR/_proxy/stats" \
                2>/dev/null) || json=
            printf '%s %s\n' "$EPOCHREALTIME" "$json"
            artifacts_counts "$json"
            if [ -n "$CAPTURED" ] && [ -n "$LOST" ] &&
                [ $((CAPTURED + LOST)) -ge "$ANSWERS" ]; then
                break
            fi
            i=$((i + 1))
            next=$((next + POLL_US))
            wait_us=$((next - ${EPOCHREALTIME/./}))
            if [ "$wait_us" -gt 0 ]; then
                sleep "$((wait_us / 1000000)).$(printf '%06d' $((wait_us % 1000000)))"
            else
                next=${EPOCHREALTIME/./} # late (a slow answer): no burst to catch up
            fi
        done
    ) >"$out" &
    SAMPLER_PID=$!
    PIDS+=("$SAMPLER_PID")
}
stop_sampler() {
    touch "$TMP/sampler.stop"
    wait "$SAMPLER_PID" 2>/dev/null || true
    forget_pid "$SAMPLER_PID"
}

# run_one ROUND CONC: one measured run; appends its row to ROWS.
run_one() {
    local round=$1 conc=$2 tag="r$1-c$2" ok=1
    local base=$RESULTS/wrk-$tag
    start_servers "$tag" "$conc"
    note "round $round/$ROUNDS: --artifact-concurrency $conc: $ANSWERS answers, then capture"

    # 1. The answers: wrk ends after -d; each thread marks the end of its
    # share in TMP/done, and wrk is stopped (SIGINT) once all have. The
    # stats are sampled from the start, so that the capture is seen as it
    # happens, not after wrk has wound down.
    rm -rf "$TMP/done"
    mkdir -p "$TMP/done"
    start_sampler "$base-stats.jsonl"
    wrk -t"$THREADS" -c"$CONNS" -d"${WRK_BOUND_S}s" --timeout 60s -s "$LUA" \
        "http://$PROXY_ADDR/v1/monitor/chatgpt" -- "$ANSWERS" "$THREADS" "$TMP/done" \
        >"$base.txt" 2>&1 &
    local wrk_pid=$! markers deadline=$((SECONDS + WRK_BOUND_S + 10))
    PIDS+=("$wrk_pid")
    while kill -0 "$wrk_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
        markers=("$TMP"/done/done-*)
        [ -e "${markers[0]}" ] && [ "${#markers[@]}" -ge "$THREADS" ] && break
        sleep 0.05
    done
    kill -INT "$wrk_pid" 2>/dev/null || true # done() prints the BENCH line
    deadline=$((SECONDS + 10))
    while kill -0 "$wrk_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
        sleep 0.05
    done
    if kill -0 "$wrk_pid" 2>/dev/null; then
        stop_pid "$wrk_pid"
        cat "$base.txt" >&2 || true
        die "wrk did not stop within 10 s of SIGINT ($tag); output above"
    fi
    local wrk_rc=0
    wait "$wrk_pid" || wrk_rc=$?
    forget_pid "$wrk_pid"
    BENCH_LINE=$(grep -m 1 '^BENCH ' "$base.txt" || true)
    if [ "$wrk_rc" != 0 ] || [ -z "$BENCH_LINE" ]; then
        cat "$base.txt" >&2 || true
        die "wrk failed (status $wrk_rc) or printed no BENCH line ($tag); output above"
    fi
    local answers last first
    answers=$(field answers "$BENCH_LINE")
    first=$(field first_send "$BENCH_LINE")
    last=$(field last_answer "$BENCH_LINE")
    if [ "$answers" != "$ANSWERS" ] || [ "$(field sent "$BENCH_LINE")" != "$ANSWERS" ]; then
        ok=0
        note "error: $tag: $answers answers to $(field sent "$BENCH_LINE") requests, expected $ANSWERS within ${WRK_BOUND_S} s"
    fi
    local k
    for k in non200 notstored connect read write status timeout; do
        if [ "$(field "$k" "$BENCH_LINE")" != 0 ]; then
            ok=0
            note "error: $tag: $k=$(field "$k" "$BENCH_LINE") ($BENCH_LINE)"
        fi
    done

    # 2. The capture: the sampler stops by itself once captured + lost
    # reaches ANSWERS; it is stopped DEADLINE_S s after the last answer.
    local t_stop
    t_stop=$(awk -v l="$last" -v d="$DEADLINE_S" 'BEGIN { printf "%.0f", l + d + 1 }')
    while kill -0 "$SAMPLER_PID" 2>/dev/null && [ "${EPOCHREALTIME%.*}" -lt "$t_stop" ]; do
        sleep 0.05
    done
    stop_sampler
    # The first sample showing all captured, else the last one: "TIME JSON".
    local line now json status=timeout lag=-
    line=$(awk -v n="$ANSWERS" '
        { last = $0 }
        match($0, /"artifacts":\{[^}]*\}/) {
            obj = substr($0, RSTART, RLENGTH)
            if (match(obj, /"captured":[0-9]+/) && substr(obj, RSTART + 11, RLENGTH - 11) + 0 >= n) {
                print; found = 1; exit
            }
        }
        END { if (!found) print last }' "$base-stats.jsonl")
    now=${line%% *}
    json=${line#* }
    artifacts_counts "$json"
    if [ -z "$CAPTURED" ] || [ -z "$LOST" ] || [ -z "$PENDING" ]; then
        die "no artifacts counters in the last /_proxy/stats sample ($tag): $line"
    fi
    local captured=$CAPTURED lost=$LOST pending=$PENDING
    if [ "$captured" -ge "$ANSWERS" ]; then
        status=captured
        lag=$(awk -v a="$now" -v b="$last" 'BEGIN { printf "%.3f", a - b }')
    elif [ $((captured + lost)) -ge "$ANSWERS" ]; then
        status=lost
    fi
    echo "$json" >"$RESULTS/stats-$tag.json"
    local fake_json fetches upstream
    fake_json=$("${CURL[@]}" "http://$FAKE_ADDR/_fake/stats") ||
        die "cannot read http://$FAKE_ADDR/_fake/stats ($tag)"
    echo "$fake_json" >"$RESULTS/fake-stats-$tag.json"
    fetches=$(json_num "$fake_json" "" artifact_fetches)
    upstream=$(json_num "$fake_json" requests /v1/monitor/chatgpt)
    [ -n "$fetches" ] || die "no artifact_fetches in the fake's /_fake/stats ($tag): $fake_json"
    if [ "${upstream:-0}" != "$ANSWERS" ]; then
        ok=0
        note "error: $tag: the fake saw ${upstream:-0} chatgpt calls, expected $ANSWERS (one a miss)"
    fi
    if [ $((captured + lost + pending)) -ne "$ANSWERS" ]; then
        ok=0
        note "error: $tag: $((captured + lost + pending)) download jobs (captured $captured," \
            "lost $lost, pending $pending), expected $ANSWERS (one an answer)"
    fi
    [ "$status" = lost ] && note "$tag: $lost artifacts lost, $captured captured"
    [ "$status" = timeout ] &&
        note "$tag: $captured of $ANSWERS captured ($lost lost) ${DEADLINE_S} s after the last answer"
    [ "$ok" = 1 ] || FAILED=1
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$round" "$conc" "$answers" "$first" "$last" "$status" "$lag" "$captured" "$lost" \
        "$pending" "$(json_num "$json" artifacts bytes)" "$(json_num "$json" artifacts downloads)" \
        "$(json_num "$json" artifacts failures)" "$(json_num "$json" artifacts retries)" \
        "$(json_num "$json" artifacts oversized)" "$fetches" "${upstream:-0}" "$ok" >>"$ROWS"
    stop_pid "$PROXY_PID"
    stop_pid "$FAKE_PID"
}

for round in $(seq 1 "$ROUNDS"); do
    for conc in "${CONCS[@]}"; do
        run_one "$round" "$conc"
    done
done

# --- report -----------------------------------------------------------------
awk -F'\t' -v dl="$DEADLINE_S" '
    BEGIN {
        printf "%-6s %5s %8s %10s %9s %9s %6s %8s %10s %9s %8s %8s\n", "round", "conc",
            "answers", "answers/s", "lag s", "captured", "lost", "pending", "downloads",
            "failures", "retries", "fetches"
    }
    {
        secs = $5 - $4
        rate = secs > 0 ? $3 / secs : 0
        lag = $6 == "captured" ? sprintf("%.2f", $7) : $6 == "lost" ? "lost" : ">" dl
        note = $18 == 1 ? "" : "  ERRORS"
        printf "%-6s %5s %8d %10.0f %9s %9d %6d %8d %10d %9d %8d %8d%s\n", $1, $2, $3, rate,
            lag, $8, $9, $10, $12, $13, $14, $16, note
    }' "$ROWS" >"$TMP/table.txt"

# median_lag CONC: the median over rounds of the lag at CONC, "inf" when the
# median round did not capture everything (lost, or not within DEADLINE_S).
NEVER=999999 # the lag of a run that did not capture everything, for sorting
median_lag() {
    awk -F'\t' -v c="$1" -v never="$NEVER" '$2 == c { print ($6 == "captured" ? $7 : never) }' \
        "$ROWS" | sort -g | awk -v never="$NEVER" '
            { v[++n] = $1 }
            END {
                if (n == 0) { print "inf"; exit }
                if (n % 2) m = v[(n + 1) / 2]
                else if (v[n / 2 + 1] >= never) m = never
                else m = (v[n / 2] + v[n / 2 + 1]) / 2
                if (m >= never) print "inf"; else printf "%.2f\n", m
            }'
}
# median_rate CONC: the median answers/s over rounds at CONC.
median_rate() {
    awk -F'\t' -v c="$1" '$2 == c && $5 > $4 { print $3 / ($5 - $4) }' "$ROWS" | sort -g |
        awk '{ v[++n] = $1 } END { if (n == 0) print 0; else printf "%.0f\n", n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }'
}
LAG=$(median_lag "${CONCS[0]}")
LAG_INFO=$(median_lag "${CONCS[1]}")
RATE=$(median_rate "${CONCS[0]}")
RATE_INFO=$(median_rate "${CONCS[1]}")
if [ "$LAG" = inf ]; then
    LAG_TEXT="not all captured within ${DEADLINE_S}.00 s"
    VERDICT=FAIL
else
    LAG_TEXT="$LAG s"
    VERDICT=$(awk -v l="$LAG" -v g="$GOAL_S" 'BEGIN { print (l <= g) ? "PASS" : "FAIL" }')
fi
if [ "$LAG_INFO" = inf ]; then LAG_INFO_TEXT="not all captured"; else LAG_INFO_TEXT="$LAG_INFO s"; fi
if [ "$ROUNDS" -gt 1 ]; then over="median over $ROUNDS rounds"; else over="one round"; fi
NOTE="(lag: last answer -> stats showing all $ANSWERS captured, polled every ${POLL_S} s, at"
NOTE+=" --artifact-concurrency ${CONCS[0]}, $over, at $RATE answers/s; for information at"
NOTE+=" --artifact-concurrency ${CONCS[1]}: $LAG_INFO_TEXT at $RATE_INFO answers/s)"
FINAL="artifact capture lag after $ANSWERS answers: $LAG_TEXT (goal <= $GOAL_S s): $VERDICT"

LEGEND="conc: --artifact-concurrency; answers/s: answers / (last answer - first request);"
LEGEND+=$'\n'"lag s: last answer -> all captured (lost: some were lost; >$DEADLINE_S: not all captured by then);"
LEGEND+=$'\n'"captured/lost/pending/downloads/failures/retries: the proxy's artifacts stats when polling"
LEGEND+=$'\n'"stopped; fetches: the fake's artifact_fetches"
publish_results "$LEGEND" "$NOTE" "$FINAL"
echo "$NOTE"
if [ "$FAILED" != 0 ]; then
    note "error: some runs did not get their $ANSWERS answers cleanly (errors, non-200, not" \
        "stored, not one call upstream and one download job each; marked ERRORS above)"
    echo "$FINAL"
    exit 1
fi
echo "$FINAL"
