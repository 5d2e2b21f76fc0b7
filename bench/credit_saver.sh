#!/usr/bin/env bash
# credit_saver.sh BUILD_DIR: what the credit saver saves, and what it costs
# in latency.
#
# The credit saver answers a sync monitor call (POST /v1/monitor/chatgpt)
# through cloro's async API: it creates a task, polls it (every eighth of its
# age, from --poll-initial 250ms up to --poll-interval 5s) and answers in the
# sync shape. The fake upstream bills a sync call 2 credits more than the
# same async task (chatgpt 5, sync surcharge 2). This script measures, for a
# provider time T (the fake's --latency-ms for sync calls and
# --task-duration-ms for async tasks, both T):
#   - the latency of sync calls asked upstream in sync mode
#     (X-Proxy-Upstream-Mode: sync) and in async mode
#     (X-Proxy-Upstream-Mode: async): median, p90, p99 (nearest rank), and
#     the median async adds over sync, in ms and in % of T;
#   - the credits each mode cost (the fake's credits_charged_total delta, and
#     the sum of the answers' X-Credits-Charged) and the credits saved per
#     1000 calls.
#
# For each provider time (PROVIDER_MS, default 2000, with N calls a mode;
# then LONG_MS, default 10000, with LONG_N calls a mode unless LONG_N=0), all
# on 127.0.0.1: a fresh fake cloro upstream (--latency-ms T
# --task-duration-ms T --concurrency-limit 500, rate window raised so nothing
# trips) and a fresh cloro-proxy in front of it (its cache in a temp dir,
# --access-log false --max-concurrency 200 --rate-limit-per-endpoint 0, the
# key from CLORO_API_KEY, upstream_mode left at its default: the header
# decides). ROUNDS times, each mode in turn (odd rounds sync then async, even
# rounds async then sync): N calls with distinct prompts (so none is a cache
# hit or shares a task), C at a time (curl under xargs -P), each call's
# status, curl time_total, X-Credits-Charged, X-Proxy-Upstream-Mode and
# X-Cache recorded. The fake's /_fake/stats is read around each batch.
#
# A batch fails the bench (exit 1) when any answer is not a 200 or is a
# cache hit, when an async-mode answer lacks X-Proxy-Upstream-Mode: async or
# a sync-mode answer carries it, when the fake did not see exactly N sync
# calls (requests./v1/monitor/chatgpt) and no async task in sync mode, or
# any sync call and exactly N async tasks (async.tasks_created) in async
# mode. Prints one row per batch and, per provider time, the added latency
# and the credits saved. The table, every call's record (calls-*.tsv), the
# stats read and the server logs go to bench/results/<run>/.
#
# Exit status: 0 when every batch was clean (whatever the latency: this is a
# measurement), 1 on any error, 2 on bad usage.
#
# Environment: N (calls a mode and round, default 200), C (calls at once,
# default 50), PROVIDER_MS (provider time of the first row, default 2000),
# LONG_MS (of the second row, default 10000), LONG_N (calls a mode and round
# in the second row, default 50; 0 skips it), ROUNDS (default 1; the added
# latency is the median over rounds of the per-round difference), FAKE_BIN
# (the fake upstream, default BUILD_DIR/tests/fake_cloro/fake_cloro).
# DURATION and WARMUP, common to the bench scripts, are not used. A run takes
# about ROUNDS x 2 x (ceil(N/C) x PROVIDER_MS + ceil(LONG_N/C) x LONG_MS),
# plus the polling delay and a few seconds of start-up.
set -euo pipefail

KEY=sk_live_bench
API_PATH=/v1/monitor/chatgpt
MAX_CONCURRENCY=200

prog=credit_saver.sh
# shellcheck source=bench/args.sh
. "$(dirname "${BASH_SOURCE[0]}")/args.sh"
parse_args "$@" -- N=200 C=50 PROVIDER_MS=2000 LONG_MS=10000
# shellcheck disable=SC2153 # N, C, PROVIDER_MS and LONG_MS are set by parse_args
LONG_N=${LONG_N:-50}
[[ $LONG_N =~ ^(0|[1-9][0-9]*)$ ]] || { echo "$prog: LONG_N must be 0 or a positive integer" >&2; exit 2; }
[ "$C" -le "$MAX_CONCURRENCY" ] ||
    { echo "$prog: C must be at most $MAX_CONCURRENCY (the proxy's --max-concurrency)" >&2; exit 2; }
if [ "$N" -gt 100000 ] || [ "$LONG_N" -gt 100000 ]; then
    echo "$prog: N and LONG_N must be at most 100000" >&2
    exit 2
fi

FAKE_BIN=${FAKE_BIN:-$BUILD_DIR/tests/fake_cloro/fake_cloro}
PROXY_BIN=$BUILD_DIR/proxy/cloro-proxy

# --- prerequisites ----------------------------------------------------------
command -v curl >/dev/null 2>&1 || die "curl is required (the calls, the fake's counters)"
command -v xargs >/dev/null 2>&1 || die "xargs is required"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is required"
[ -x "$FAKE_BIN" ] || die "fake upstream not found at $FAKE_BIN: build first"
[ -x "$PROXY_BIN" ] || die "cloro-proxy not found at $PROXY_BIN: build first"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cloro-bench.XXXXXX")
RUN_ID=credit-saver-$(date +%Y%m%d-%H%M%S)
RESULTS=$BENCH_DIR/results/$RUN_ID
mkdir -p "$RESULTS"

# Process bookkeeping, start_fake, start_proxy, stop_pid.
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
# The same for the script's own curl calls, bounded in time.
CURL=(curl -sS --noproxy '*' --max-time 10)

# Every provider time has its own fake and proxy, more than the fixed log
# names lib.sh's cleanup copies (fake.log, proxy.log): their logs are written
# to RESULTS.

# start_servers T: a fresh fake upstream answering sync calls in T ms and
# completing async tasks in T ms, and a fresh cloro-proxy (empty cache) in
# front of it; sets FAKE_PID, FAKE_ADDR, PROXY_PID, PROXY_ADDR. Logs:
# RESULTS/{fake,proxy}-T.log.
start_servers() {
    local t=$1
    # 500 slots, the rate window raised: nothing trips (credits: 1,000,000 by
    # default, far more than a run costs). --log-level warn drops the
    # per-request lines; the listening line is always printed.
    start_fake "$t" --latency-ms "$t" --task-duration-ms "$t" --concurrency-limit 500 \
        --rate-limit 100000000 --log-level warn
    # The cache is on (the default), in the temp dir; upstream_mode is the
    # default (sync): each call's header picks the mode.
    start_proxy "$t" --max-concurrency "$MAX_CONCURRENCY" --rate-limit-per-endpoint 0
}

# fake_counts OUT: reads the fake's /_fake/stats into OUT and sets F_SYNC
# (requests./v1/monitor/chatgpt, 0 when absent), F_CREDITS
# (credits_charged_total) and F_TASKS (async.tasks_created).
fake_counts() {
    local json
    json=$("${CURL[@]}" "http://$FAKE_ADDR/_fake/stats") ||
        die "cannot read http://$FAKE_ADDR/_fake/stats"
    printf '%s\n' "$json" >"$1"
    F_SYNC=0
    [[ $json =~ \"requests\":\{[^}]*\"/v1/monitor/chatgpt\":([0-9]+) ]] && F_SYNC=${BASH_REMATCH[1]}
    F_CREDITS=
    [[ $json =~ \"credits_charged_total\":([0-9]+) ]] && F_CREDITS=${BASH_REMATCH[1]}
    F_TASKS=
    [[ $json =~ \"async\":\{[^}]*\"tasks_created\":([0-9]+) ]] && F_TASKS=${BASH_REMATCH[1]}
    if [ -z "$F_CREDITS" ] || [ -z "$F_TASKS" ]; then
        die "no credits_charged_total or async.tasks_created in the fake's /_fake/stats: $json"
    fi
}

# proxy_saved OUT: reads the proxy's /_proxy/stats into OUT and sets
# P_SAVED (tasks.credit_saver.credits_saved, - when absent).
proxy_saved() {
    local json
    json=$("${CURL[@]}" "http://$PROXY_ADDR/_proxy/stats") ||
        die "cannot read http://$PROXY_ADDR/_proxy/stats"
    printf '%s\n' "$json" >"$1"
    P_SAVED=-
    [[ $json =~ \"credit_saver\":\{[^}]*\"credits_saved\":([0-9]+) ]] && P_SAVED=${BASH_REMATCH[1]}
    return 0
}

# One call, run by xargs: call URL MODE TAG DIR I. Body to /dev/null, headers
# to DIR/I.h, "status time_total" to DIR/I.w. A transport error leaves status
# 000 (curl prints it with -w) and is counted as a non-200.
call() {
    local url=$1 mode=$2 tag=$3 dir=$4 i=$5
    curl -s --noproxy '*' --max-time "$CALL_MAX_S" -o /dev/null -D "$dir/$i.h" \
        -w '%{http_code} %{time_total}\n' -X POST -H 'Content-Type: application/json' \
        -H "Authorization: Bearer $KEY" -H "X-Proxy-Upstream-Mode: $mode" \
        --data-binary "{\"prompt\":\"bench credit saver $tag $mode $i\",\"country\":\"US\"}" \
        "$url" >"$dir/$i.w" 2>"$dir/$i.err" || true
}
export -f call
export KEY

# batch T ROUND MODE COUNT: COUNT distinct calls in MODE, C at a time;
# appends a row to ROWS and every call's record to RESULTS/calls-T-rROUND-MODE.tsv
# (i status latency_ms credits upstream_mode x_cache).
batch() {
    local t=$1 round=$2 mode=$3 count=$4
    local tag="t$t-r$round" dir=$TMP/calls-$t-r$round-$mode
    local out=$RESULTS/calls-$t-r$round-$mode.tsv
    local waves=$(((count + C - 1) / C))
    local bound=$((waves * (t / 1000 + 30) + 60))
    mkdir -p "$dir"
    note "provider ${t} ms, round $round/$ROUNDS: $count calls in $mode mode, $C at a time"
    fake_counts "$RESULTS/fake-stats-$t-r$round-$mode-before.json"
    local sync0=$F_SYNC credits0=$F_CREDITS tasks0=$F_TASKS
    proxy_saved "$RESULTS/proxy-stats-$t-r$round-$mode-before.json"
    local saved0=$P_SAVED
    local start=${EPOCHREALTIME/./}
    if ! seq 1 "$count" | CALL_MAX_S=$((t / 1000 + 60)) timeout -k 5 "$bound" \
        xargs -P "$C" -n 1 bash -c 'call "$@"' _ "http://$PROXY_ADDR$API_PATH" "$mode" "$tag" "$dir"
    then
        die "the $mode batch (provider $t ms, round $round) failed or overran ${bound}s"
    fi
    local wall_ms=$(((${EPOCHREALTIME/./} - start) / 1000))
    fake_counts "$RESULTS/fake-stats-$t-r$round-$mode-after.json"
    proxy_saved "$RESULTS/proxy-stats-$t-r$round-$mode-after.json"
    local d_sync=$((F_SYNC - sync0)) d_credits=$((F_CREDITS - credits0))
    local d_tasks=$((F_TASKS - tasks0)) d_saved=-
    if [ "$saved0" != - ] && [ "$P_SAVED" != - ]; then d_saved=$((P_SAVED - saved0)); fi

    # Every call's record, in order.
    local i w h
    : >"$out"
    for i in $(seq 1 "$count"); do
        w=$(cat "$dir/$i.w" 2>/dev/null || true)
        [ -n "$w" ] || w="000 0"
        h=$(awk '{ sub(/\r$/, "") }
            tolower($1) == "x-credits-charged:" { c = $2 }
            tolower($1) == "x-proxy-upstream-mode:" { m = $2 }
            tolower($1) == "x-cache:" { x = $2 }
            END { printf "%s\t%s\t%s", c == "" ? "-" : c, m == "" ? "-" : m, x == "" ? "-" : x }' \
            "$dir/$i.h" 2>/dev/null || printf -- '-\t-\t-')
        printf '%s\t%s\t%s\t%s\n' "$i" "${w%% *}" \
            "$(awk -v s="${w#* }" 'BEGIN { printf "%.1f", s * 1000 }')" "$h" >>"$out"
    done

    # Per-batch figures: latency percentiles (nearest rank), checks.
    local stats
    stats=$(awk -F'\t' -v mode="$mode" '
        { lat[NR] = $3 + 0; if ($2 != 200) bad++; if ($6 == "HIT") hits++
          if ($4 ~ /^[0-9]+$/) credits += $4; else nocred++
          if (mode == "async" && $5 != "async") wrongmode++
          if (mode == "sync" && $5 == "async") wrongmode++ }
        END {
            n = NR
            for (i = 2; i <= n; i++)
                for (j = i; j > 1 && lat[j - 1] > lat[j]; j--) { t = lat[j]; lat[j] = lat[j - 1]; lat[j - 1] = t }
            split("0.5 0.9 0.99", q, " ")
            for (k = 1; k <= 3; k++) { r = int(q[k] * n); if (r < q[k] * n) r++; if (r < 1) r = 1; p[k] = lat[r] }
            printf "%d %.1f %.1f %.1f %d %d %d %d %d\n", n, p[1], p[2], p[3], bad + 0, hits + 0,
                wrongmode + 0, credits + 0, nocred + 0
        }' "$out")
    local n p50 p90 p99 bad hits wrongmode hdr_credits nocred
    read -r n p50 p90 p99 bad hits wrongmode hdr_credits nocred <<<"$stats"
    local ok=1 why=()
    [ "$n" = "$count" ] || { ok=0; why+=("$n records for $count calls"); }
    [ "$bad" = 0 ] || { ok=0; why+=("$bad non-200 answers"); }
    [ "$hits" = 0 ] || { ok=0; why+=("$hits cache hits"); }
    [ "$wrongmode" = 0 ] ||
        { ok=0; why+=("$wrongmode answers with the wrong X-Proxy-Upstream-Mode"); }
    [ "$nocred" = 0 ] || { ok=0; why+=("$nocred answers without X-Credits-Charged"); }
    if [ "$mode" = sync ]; then
        [ "$d_sync" = "$count" ] || { ok=0; why+=("the fake saw $d_sync sync calls, expected $count"); }
        [ "$d_tasks" = 0 ] || { ok=0; why+=("the fake saw $d_tasks async tasks, expected 0"); }
    else
        [ "$d_sync" = 0 ] || { ok=0; why+=("the fake saw $d_sync sync calls, expected 0"); }
        [ "$d_tasks" = "$count" ] ||
            { ok=0; why+=("the fake saw $d_tasks async tasks, expected $count"); }
    fi
    if [ "$ok" != 1 ]; then
        FAILED=1
        note "error: provider $t ms, round $round, $mode: ${why[*]}"
    fi
    # t round mode n p50 p90 p99 wall_ms fake_credits header_credits fake_sync fake_tasks
    # proxy_saved ok
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$round" "$mode" \
        "$n" "$p50" "$p90" "$p99" "$wall_ms" "$d_credits" "$hdr_credits" "$d_sync" "$d_tasks" \
        "$d_saved" "$ok" >>"$ROWS"
    rm -rf "$dir"
}

# --- run description --------------------------------------------------------
{
    run_header
    echo "curl: $(curl --version | head -n 1 | cut -d' ' -f1-2)"
    echo "settings: N=$N C=$C PROVIDER_MS=$PROVIDER_MS LONG_MS=$LONG_MS LONG_N=$LONG_N" \
        "ROUNDS=$ROUNDS; proxy --max-concurrency $MAX_CONCURRENCY --rate-limit-per-endpoint 0," \
        "poll_initial/poll_interval/max_open_tasks at their defaults"
    echo "every provider time: a fresh fake upstream (--latency-ms T --task-duration-ms T" \
        "--concurrency-limit 500) and a fresh cloro-proxy (empty cache) on 127.0.0.1"
} | tee "$RESULTS/env.txt"
echo

# --- measurements -----------------------------------------------------------
ROWS=$TMP/rows.tsv
: >"$ROWS"
FAILED=0

SETS=("$PROVIDER_MS:$N")
if [ "$LONG_N" -gt 0 ]; then SETS+=("$LONG_MS:$LONG_N"); fi

for set in "${SETS[@]}"; do
    t=${set%%:*} count=${set#*:}
    start_servers "$t"
    for round in $(seq 1 "$ROUNDS"); do
        if [ $((round % 2)) = 1 ]; then modes=(sync async); else modes=(async sync); fi
        for mode in "${modes[@]}"; do
            batch "$t" "$round" "$mode" "$count"
        done
    done
    proxy_saved "$RESULTS/proxy-stats-$t-end.json"
    stop_pid "$PROXY_PID"
    stop_pid "$FAKE_PID"
done

# --- report -----------------------------------------------------------------
awk -F'\t' '
    BEGIN {
        printf "%-9s %-5s %-6s %6s %9s %9s %9s %9s %8s %8s %6s %6s %6s\n", "provider", "round",
            "mode", "calls", "p50 ms", "p90 ms", "p99 ms", "calls/s", "credits", "hdr cr",
            "sync", "tasks", "saved"
    }
    {
        note = $14 == 1 ? "" : "  ERRORS"
        printf "%-9s %-5s %-6s %6d %9.1f %9.1f %9.1f %9.1f %8d %8d %6d %6d %6s%s\n", $1 " ms", $2,
            $3, $4, $5, $6, $7, ($8 > 0 ? $4 * 1000 / $8 : 0), $9, $10, $11, $12, $13, note
    }' "$ROWS" >"$TMP/table.txt"

# summary T: the lines of provider time T: per-mode latency (pooled over
# rounds: median of the per-round figures), added latency (median over
# rounds of async p50 - sync p50), credits and credits saved per 1000 calls.
summary() {
    awk -F'\t' -v t="$1" '
        function med(a, n,    i, j, x) {
            for (i = 2; i <= n; i++)
                for (j = i; j > 1 && a[j - 1] > a[j]; j--) { x = a[j]; a[j] = a[j - 1]; a[j - 1] = x }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        $1 == t {
            if ($3 == "sync") { s50[$2] = $5; sc += $9; sn += $4 } else { a50[$2] = $5; ac += $9; an += $4 }
            p50[$3, ++k[$3]] = $5; p90[$3, k[$3]] = $6; p99[$3, k[$3]] = $7
        }
        END {
            n = 0
            for (r in s50) if (r in a50) d[++n] = a50[r] - s50[r]
            added = med(d, n)
            for (m = 1; m <= 2; m++) {
                mode = m == 1 ? "sync" : "async"
                for (i = 1; i <= k[mode]; i++) { x[i] = p50[mode, i]; y[i] = p90[mode, i]; z[i] = p99[mode, i] }
                printf "provider %d ms, %-5s mode: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms\n", t, mode,
                    med(x, k[mode]), med(y, k[mode]), med(z, k[mode])
            }
            printf "provider %d ms: async adds %+.1f ms to the median (%+.1f %% of the %d ms provider time)\n",
                t, added, added * 100 / t, t
            spc = sn ? sc / sn : 0; apc = an ? ac / an : 0
            printf "provider %d ms: credits: sync %d for %d calls (%.2f a call), async %d for %d calls (%.2f a call): %.0f saved per 1000 calls (%.1f %%)\n",
                t, sc, sn, spc, ac, an, apc, (spc - apc) * 1000, spc ? (spc - apc) * 100 / spc : 0
        }' "$ROWS"
}

{
    cat "$TMP/table.txt"
    echo
    echo "p50/p90/p99: curl time_total of each call, nearest rank; calls/s: calls / the batch's wall time;"
    echo "credits: the fake's credits_charged_total delta; hdr cr: sum of X-Credits-Charged;"
    echo "sync/tasks: sync calls / async tasks the fake saw; saved: the proxy's credit_saver.credits_saved delta"
    for set in "${SETS[@]}"; do
        summary "${set%%:*}"
    done
} >"$RESULTS/table.txt"
cat "$RESULTS/env.txt" "$RESULTS/table.txt" >"$RESULTS/summary.txt"
ln -sfn "$RUN_ID" "$BENCH_DIR/results/latest"

cat "$RESULTS/table.txt"
echo
echo "results: $RESULTS"
if [ "$FAILED" != 0 ]; then
    note "error: some batches had non-200s, cache hits, wrong modes or unexpected upstream calls" \
        "(marked ERRORS above)"
    exit 1
fi
