#!/usr/bin/env bash
# async_batch.sh BUILD_DIR: how fast cloro-proxy answers an async batch whose
# tasks are all in its cache.
#
# The figure: a 500-task POST /v1/async/task/batch with every task cached is
# answered in under 20 ms (p50 at one connection). All on 127.0.0.1, a fresh
# pair for every run (the store only grows: each run starts empty): the
# fake cloro upstream and cloro-proxy in front of it (its cache in a temp dir,
# --access-log false --rate-limit-per-endpoint 0 --max-concurrency 64, key
# from CLORO_API_KEY). The cache is warmed with TASKS distinct sync calls
# (POST /v1/monitor/chatgpt {"prompt":"bench async prompt N","country":"US"},
# curl, 64 at once), each of which must reach the upstream once and be stored;
# a second call of two of them must be X-Cache: HIT. Then one batch of TASKS
# tasks with the same prompts ({"taskType":"CHATGPT","payload":{...}}) is
# sent with curl: it must be a 200 with summary.succeeded = TASKS and
# X-Proxy-Batch "cached=TASKS; attached=0; duplicate=0; upstream=0;
# reused=0", and the fake must have seen no async call (/_fake/stats
# async.batch_calls and async.creates 0).
#
# Then wrk (bench/post_async_batch.lua: the same batch body, from a file)
# runs, after a short warm-up; all this for each load shape, ROUNDS times:
#   -t1 -c1   one batch at a time (the figure: p50, and p99)
#   -t4 -c4   four connections, for information (one a wrk thread: the
#             Lua script's clock needs one connection a thread)
# Each batch answered makes TASKS task records, which the proxy's writer
# thread commits to its LMDB store in the background (its queue holds 65,536
# ops; beyond that ops are dropped and counted). While that queue is over
# half full the proxy refuses submissions with 503 SERVICE_UNAVAILABLE and
# Retry-After: the Lua script counts those ("busy", not an error) apart from
# the 200s, and measures the latency of the 200s itself (wrk's histogram
# mixes both). After each run the script
# reads the proxy's RSS (/proc/PID/status), the writer's counters
# (GET /_proxy/cache/stats: queued, committed, dropped), then waits for the
# writer to catch up (60 s at most) and reports how long that took and the
# store's size on disk. The fake's counters (requests_total,
# async.batch_calls, async.creates) are read around every run: any call
# reaching the upstream fails the bench, and so does any socket error,
# timeout, status other than 200 and the busy 503, or 200 not answered
# wholly from the cache (counted by the Lua script). Prints a table and the
# verdict (median over rounds):
#   p50 of the 200 answers at -t1 -c1 < 20 ms: PASS, else MISS
# The table, raw wrk outputs, the stats read and server logs go to
# bench/results/<run>/.
#
# Exit status: 0 when every batch of every run was a 200 answered wholly from
# the cache or a busy 503, and the upstream saw none of them (even if the
# goal is missed, batches were refused or the writer dropped records: this
# is a measurement, the table says so),
# 1 on any error, 2 on bad usage.
#
# Environment: DURATION (seconds a measured run lasts, default 10), WARMUP
# (seconds, default 1), ROUNDS (times the whole sequence is repeated, default
# 1; the verdict takes the median over rounds), TASKS (tasks a batch, default
# 500, at most 500: cloro's batch limit), FAKE_BIN (the fake upstream, default
# BUILD_DIR/tests/fake_cloro/fake_cloro).
set -euo pipefail

GOAL_MS=20
KEY=sk_live_bench
SYNC_PATH=/v1/monitor/chatgpt
BATCH_PATH=/v1/async/task/batch
PROMPT='bench async prompt' # + " N", N = 1..TASKS
WARM_PARALLEL=64            # sync calls at once while warming, the proxy's --max-concurrency
MAX_CONCURRENCY=64
DRAIN_S=60 # how long the writer may take to catch up after a run

prog=async_batch.sh
# shellcheck source=bench/args.sh
. "$(dirname "${BASH_SOURCE[0]}")/args.sh"
parse_args "$@" -- TASKS=500
# shellcheck disable=SC2153 # TASKS is set by parse_args
[ "$TASKS" -le 500 ] || { echo "$prog: TASKS must be at most 500 (cloro's batch limit)" >&2; exit 2; }

LUA=$BENCH_DIR/post_async_batch.lua
FAKE_BIN=${FAKE_BIN:-$BUILD_DIR/tests/fake_cloro/fake_cloro}
PROXY_BIN=$BUILD_DIR/proxy/cloro-proxy

# --- prerequisites ----------------------------------------------------------
command -v wrk >/dev/null 2>&1 ||
    die "wrk is not installed: 'apt-get install wrk' (or 'make bench-async', which installs it)"
command -v curl >/dev/null 2>&1 || die "curl is required (warm-up, checks, stats)"
command -v xargs >/dev/null 2>&1 || die "xargs (findutils) is required (warm-up)"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is required"
[ -x "$FAKE_BIN" ] ||
    die "fake upstream not found at $FAKE_BIN: build first (make bench-async builds it)"
[ -x "$PROXY_BIN" ] ||
    die "cloro-proxy not found at $PROXY_BIN: build first (make bench-async builds it)"
[ -r "$LUA" ] || die "missing $LUA"
[ -n "${EPOCHREALTIME:-}" ] || die "bash 5 or later is required (EPOCHREALTIME)"

# Before the warm-up's own load.
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
PSI_START=$(sed -n 's/^some avg10=\([0-9.]*\).*/\1/p' /proc/pressure/cpu 2>/dev/null || true)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cloro-bench.XXXXXX")
RUN_ID=async-batch-$(date +%Y%m%d-%H%M%S)
RESULTS=$BENCH_DIR/results/$RUN_ID
mkdir -p "$RESULTS"

# Process bookkeeping, start_fake, start_proxy, stop_pid, run_wrk.
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
# The same for the script's own curl calls, bounded in time.
CURL=(curl -sS --noproxy '*' --max-time 10)

# --- servers: a fresh pair for every run -----------------------------------
# Every batch adds TASKS task records to the proxy's store, which are never
# evicted (~1.7 MB a batch; the map is 2 GiB): each run starts on an empty
# store, so that runs compare and none fills the map.

# start_servers TAG: a fresh fake upstream and a fresh cloro-proxy (an empty
# cache in TMP/cache); sets FAKE_PID, FAKE_ADDR, PROXY_PID, PROXY_ADDR. Logs:
# RESULTS/{fake,proxy}-TAG.log.
start_servers() {
    local tag=$1
    # 200 slots (more than the warm-up's 64 calls at once); its default
    # latency and credit balance apply: only the warm-up's sync calls reach it.
    start_fake "$tag" --concurrency-limit 200 --log-level warn
    # The cache (and with it the async task store) lives in the temp dir.
    start_proxy "$tag" --rate-limit-per-endpoint 0 --max-concurrency "$MAX_CONCURRENCY"
}

# --- reading counters -------------------------------------------------------
# json_num JSON NAME [OBJECT]: the first number NAME in JSON, or in its
# OBJECT ("async", "writer", "tasks": up to the object's first "}", enough for
# the counters read here); empty when missing. No fork.
json_num() {
    local s=$1
    if [ -n "${3:-}" ]; then
        [[ $s =~ \"$3\":\{([^}]*) ]] || return 0
        s="{${BASH_REMATCH[1]}"
    fi
    [[ $s =~ [{,]\"$2\":[[:space:]]*([0-9]+) ]] && echo "${BASH_REMATCH[1]}"
    return 0
}

# fake_counts: sets UP_TOTAL (every /v1 request the fake saw), UP_BATCH
# (async.batch_calls), UP_CREATES (async.creates) and UP_SYNC (calls of
# SYNC_PATH) from /_fake/stats; FAKE_JSON is the answer.
fake_counts() {
    local json
    json=$("${CURL[@]}" "http://$FAKE_ADDR/_fake/stats") ||
        die "cannot read http://$FAKE_ADDR/_fake/stats"
    FAKE_JSON=$json
    UP_TOTAL=$(json_num "$json" requests_total)
    UP_BATCH=$(json_num "$json" batch_calls async)
    UP_CREATES=$(json_num "$json" creates async)
    UP_SYNC=$(json_num "$json" "$SYNC_PATH" requests)
    if [ -z "$UP_TOTAL" ] || [ -z "$UP_BATCH" ] || [ -z "$UP_CREATES" ]; then
        die "no requests_total, async.batch_calls or async.creates in the fake's /_fake/stats: $json"
    fi
    UP_SYNC=${UP_SYNC:-0}
}

# writer_counts: sets W_QUEUED, W_COMMITTED, W_DROPPED, W_FAILED (the writer
# object) and C_ENTRIES (cached answers) from /_proxy/cache/stats;
# CACHE_JSON is the answer.
writer_counts() {
    local json
    json=$("${CURL[@]}" "http://$PROXY_ADDR/_proxy/cache/stats") ||
        die "cannot read http://$PROXY_ADDR/_proxy/cache/stats"
    CACHE_JSON=$json
    W_QUEUED=$(json_num "$json" queued writer)
    W_COMMITTED=$(json_num "$json" committed writer)
    W_DROPPED=$(json_num "$json" dropped writer)
    W_FAILED=$(json_num "$json" failed writer)
    C_ENTRIES=$(json_num "$json" entries)
    if [ -z "$W_QUEUED" ] || [ -z "$W_COMMITTED" ] || [ -z "$W_DROPPED" ] || [ -z "$W_FAILED" ] ||
        [ -z "$C_ENTRIES" ]; then
        die "no writer counters or entries in /_proxy/cache/stats: $json"
    fi
}

# task_counts: sets T_FROM_CACHE and T_CREATED_UPSTREAM (/_proxy/stats tasks).
task_counts() {
    local json
    json=$("${CURL[@]}" "http://$PROXY_ADDR/_proxy/stats") ||
        die "cannot read http://$PROXY_ADDR/_proxy/stats"
    STATS_JSON=$json
    T_FROM_CACHE=$(json_num "$json" from_cache tasks)
    T_CREATED_UPSTREAM=$(json_num "$json" created_upstream tasks)
    if [ -z "$T_FROM_CACHE" ] || [ -z "$T_CREATED_UPSTREAM" ]; then
        die "no tasks.from_cache or tasks.created_upstream in /_proxy/stats: $json"
    fi
}

# rss_kb [FIELD]: the proxy's VmRSS (or FIELD: VmHWM, RssAnon) in kB. Most
# of VmRSS is the LMDB map's pages (RssFile); RssAnon is the heap.
rss_kb() {
    local v
    v=$(sed -n "s/^${1:-VmRSS}:[[:space:]]*\([0-9][0-9]*\) kB/\1/p" "/proc/$PROXY_PID/status" \
        2>/dev/null) || true
    [ -n "$v" ] || die "cannot read ${1:-VmRSS} of the proxy (pid $PROXY_PID): has it exited?"
    echo "$v"
}

# cpu_psi: the share of the last 10 s in which some runnable task waited for
# a CPU (/proc/pressure/cpu "some avg10", %), "-" without PSI. Read right
# after a run: wrk and the proxy's two threads on 2 vCPUs make some pressure
# by themselves; much more means other work shared the machine.
cpu_psi() {
    local v
    v=$(sed -n 's/^some avg10=\([0-9.]*\).*/\1/p' /proc/pressure/cpu 2>/dev/null) || true
    echo "${v:--}"
}

# thread_ticks: sets LOOP_TICKS (utime + stime of the proxy's main thread,
# which runs the event loop) and OTHER_TICKS (its other threads: the cache
# writer, the artifact downloader), in clock ticks.
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
thread_ticks() {
    local t stat f
    LOOP_TICKS=0 OTHER_TICKS=0
    for t in /proc/"$PROXY_PID"/task/*; do
        stat=$(cat "$t/stat" 2>/dev/null) || continue
        stat=${stat##*) } # past "pid (comm) ": field 3 on
        read -r -a f <<<"$stat"
        if [ "${t##*/}" = "$PROXY_PID" ]; then
            LOOP_TICKS=$((f[11] + f[12]))
        else
            OTHER_TICKS=$((OTHER_TICKS + f[11] + f[12]))
        fi
    done
}

# ms_a_batch TICKS BATCHES: CPU ms a batch.
ms_a_batch() {
    awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", (n > 0 ? t * 1000 / hz / n : 0) }'
}

# store_kb: the size of the cache directory (LMDB data file and lock) in kB.
store_kb() { du -sk "$TMP/cache" | cut -f1; }

# --- the batch body ---------------------------------------------------------
BODY_FILE=$RESULTS/batch.json
{
    printf '['
    for n in $(seq 1 "$TASKS"); do
        [ "$n" = 1 ] || printf ','
        printf '{"taskType":"CHATGPT","payload":{"prompt":"%s %d","country":"US"}}' "$PROMPT" "$n"
    done
    printf ']'
} >"$BODY_FILE"

# --- warm: TASKS distinct sync calls, each stored; then one batch with curl --
# warm_and_check TAG: on the servers just started; sets WARM_S, CHECK_MS and
# CHECK_BYTES. Files: RESULTS/warm-TAG.txt (one "N status X-Cache" a call),
# RESULTS/check-{sync-N,batch}-TAG.*.
warm_and_check() {
    local tag=$1 sync0 t0 ok200 deadline n status cache up0 tc0 times check_s split summary
    local want_split="cached=$TASKS; attached=0; duplicate=0; upstream=0; reused=0"
    local warm=$RESULTS/warm-$tag.txt check=$RESULTS/check-batch-$tag hdr
    note "$tag: warming the cache: $TASKS sync calls to $SYNC_PATH, $WARM_PARALLEL at once"
    fake_counts
    sync0=$UP_SYNC
    t0=$EPOCHREALTIME
    seq 1 "$TASKS" | xargs -P "$WARM_PARALLEL" -I{} "${CURL[@]}" -o /dev/null \
        -w '{} %{http_code} %header{x-cache}\n' -X POST -H 'Content-Type: application/json' \
        -H "Authorization: Bearer $KEY" \
        --data-binary "{\"prompt\":\"$PROMPT {}\",\"country\":\"US\"}" \
        "http://$PROXY_ADDR$SYNC_PATH" >"$warm" 2>"$TMP/warm.err" || {
        cat "$TMP/warm.err" >&2 || true
        die "$tag: some warm-up sync calls failed (curl errors above; statuses in $warm)"
    }
    WARM_S=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    ok200=$(awk '$2 == 200' "$warm" | wc -l)
    [ "$ok200" -eq "$TASKS" ] ||
        die "$tag: $ok200 of $TASKS warm-up sync calls answered 200 (see $warm)"
    fake_counts
    [ $((UP_SYNC - sync0)) -eq "$TASKS" ] ||
        die "$tag: the warm-up reached the upstream $((UP_SYNC - sync0)) times, expected" \
            "$TASKS (one a prompt)"
    # The writer commits the answers in the background: wait for all of them.
    deadline=$((SECONDS + 10))
    while :; do
        writer_counts
        [ "$C_ENTRIES" -ge "$TASKS" ] && break
        [ $SECONDS -lt $deadline ] ||
            die "$tag: the cache holds $C_ENTRIES entries 10 s after the warm-up, expected" \
                "$TASKS: $CACHE_JSON"
        sleep 0.1
    done
    note "$tag: warm-up: $TASKS sync calls, 200, $((UP_SYNC - sync0)) upstream, in $WARM_S s;" \
        "cache entries $C_ENTRIES"

    # A second sync call of a sample must be a hit, and not reach the upstream.
    for n in 1 "$TASKS"; do
        hdr=$RESULTS/check-sync-$n-$tag.headers
        status=$("${CURL[@]}" -o /dev/null -D "$hdr" -w '%{http_code}' \
            -X POST -H 'Content-Type: application/json' -H "Authorization: Bearer $KEY" \
            --data-binary "{\"prompt\":\"$PROMPT $n\",\"country\":\"US\"}" \
            "http://$PROXY_ADDR$SYNC_PATH") || die "$tag: the check sync call of prompt $n failed"
        cache=$(sed -n 's/^X-Cache:[[:space:]]*\([^[:space:]]*\).*/\1/Ip' "$hdr" | tr -d '\r' |
            head -n 1)
        if [ "$status" != 200 ] || [ "$cache" != HIT ]; then
            cat "$hdr" >&2 || true
            die "$tag: the second sync call of prompt $n is not a cache hit: status $status," \
                "X-Cache: ${cache:-none} (headers above)"
        fi
    done
    fake_counts
    [ $((UP_SYNC - sync0)) -eq "$TASKS" ] || die "$tag: a check sync call reached the upstream"
    note "$tag: a second sync call of prompts 1 and $TASKS: 200, X-Cache: HIT, upstream +0"

    fake_counts
    up0=$UP_TOTAL
    task_counts
    tc0=$T_FROM_CACHE
    times=$("${CURL[@]}" -o "$check.body" -D "$check.headers" \
        -w '%{http_code} %{time_total} %{size_download}' -X POST \
        -H 'Content-Type: application/json' -H "Authorization: Bearer $KEY" \
        --data-binary "@$BODY_FILE" "http://$PROXY_ADDR$BATCH_PATH") ||
        die "$tag: the check batch to http://$PROXY_ADDR$BATCH_PATH failed"
    read -r status check_s CHECK_BYTES <<<"$times"
    CHECK_MS=$(awk -v s="$check_s" 'BEGIN { printf "%.1f", s * 1000 }')
    split=$(sed -n 's/^X-Proxy-Batch:[[:space:]]*\(.*\)$/\1/Ip' "$check.headers" | tr -d '\r' |
        head -n 1)
    summary=$(grep -o '"summary":{[^}]*}' "$check.body" | head -n 1 || true)
    if [ "$status" != 200 ] || [ "$split" != "$want_split" ] ||
        [ "$(json_num "$summary" succeeded summary)" != "$TASKS" ] ||
        [ "$(json_num "$summary" failed summary)" != 0 ]; then
        cat "$check.headers" >&2 || true
        head -c 600 "$check.body" >&2 || true
        echo >&2
        die "$tag: the check batch was not answered wholly from the cache: status $status," \
            "X-Proxy-Batch: ${split:-none}, ${summary:-no summary} (expected $want_split)"
    fi
    fake_counts
    task_counts
    if [ "$UP_BATCH" != 0 ] || [ "$UP_CREATES" != 0 ] || [ "$UP_TOTAL" != "$up0" ]; then
        die "$tag: the check batch reached the upstream: async.batch_calls $UP_BATCH," \
            "async.creates $UP_CREATES, requests_total +$((UP_TOTAL - up0))"
    fi
    [ $((T_FROM_CACHE - tc0)) -eq "$TASKS" ] ||
        die "$tag: the proxy's tasks.from_cache rose by $((T_FROM_CACHE - tc0)), expected $TASKS"
    note "$tag: check batch: 200, X-Proxy-Batch: $split, $summary, $CHECK_BYTES bytes in" \
        "$CHECK_MS ms (curl); fake async.batch_calls 0, async.creates 0"
}

# --- run description --------------------------------------------------------
{
    echo "run: $RUN_ID"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -srm), $(nproc) cpus, loadavg at start: $LOADAVG_START," \
        "cpu psi at start: ${PSI_START:--} %"
    echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "commit: $(git -C "$BENCH_DIR/.." rev-parse --short HEAD 2>/dev/null || echo unknown)$(
        git -C "$BENCH_DIR/.." diff --quiet HEAD 2>/dev/null || echo ' (+ local changes)')"
    echo "wrk: $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2)"
    echo "settings: DURATION=${DURATION}s WARMUP=${WARMUP}s ROUNDS=$ROUNDS TASKS=$TASKS," \
        "wrk --timeout 5s, proxy --max-concurrency $MAX_CONCURRENCY --rate-limit-per-endpoint 0"
    echo "batch: $TASKS tasks, $(wc -c <"$BODY_FILE") bytes of body"
    echo "every run: a fresh fake upstream and a fresh cloro-proxy (empty cache) on 127.0.0.1"
} | tee "$RESULTS/env.txt"

# --- measurements -----------------------------------------------------------
LOADS=(c1 c4)
declare -A LOAD_ARGS=([c1]="-t1 -c1" [c4]="-t4 -c4")
declare -A URL # read by run_wrk (lib.sh), set for each round's proxy
# shellcheck disable=SC2034 # read by run_wrk (lib.sh)
WRK_PATH=$BATCH_PATH
export BATCH_BODY=$BODY_FILE BATCH_TASKS=$TASKS # read by post_async_batch.lua

# round load ok_rps ok_p50 ok_p90 ok_p99 (ms, "-" without ok answers) ok
# upstream rss_kb backlog dropped drain_s store_kb anon_kb psi cpu_loop
# cpu_other (ms an answer) busy answers wrk_p50 wrk_p99 (ms, every answer)
ROWS=$TMP/rows.tsv
: >"$ROWS"
FAILED=0
HWM_MB=() # the proxy's peak RSS, MB, each run


# run_batches LOAD SECONDS OUT: run_wrk (lib.sh) that also fails on a batch
# not answered wholly from the cache, and sets UPSTREAM (calls the fake saw
# meanwhile: /v1 requests, async batches and creates; must be none).
run_batches() {
    local t0 b0 c0
    fake_counts
    t0=$UP_TOTAL b0=$UP_BATCH c0=$UP_CREATES
    run_wrk cloro-proxy "$@" notcached
    fake_counts
    UPSTREAM=$(((UP_TOTAL - t0) + (UP_BATCH - b0) + (UP_CREATES - c0)))
    if [ "$UPSTREAM" != 0 ]; then
        BENCH_OK=0
    fi
}

# ms LINE KEY: the µs KEY of a BENCH line in ms, "-" when 0 (no answer).
ms() {
    awk -v u="$(field "$2" "$1")" 'BEGIN { if (u + 0 > 0) printf "%.3f", u / 1000; else print "-" }'
}

# no_errors LINE: true when the BENCH line counts no error of any kind.
no_errors() {
    local k
    for k in non200 notcached connect read write status timeout; do
        [ "$(field "$k" "$1")" = 0 ] || return 1
    done
}

# drain: waits (DRAIN_S at most) until the writer has committed everything
# queued (queued - committed - failed <= 0) or stops moving; sets DRAIN (s,
# or ">DRAIN_S").
drain() {
    local t0=$EPOCHREALTIME deadline=$((SECONDS + DRAIN_S)) last=-1 still=0
    while :; do
        writer_counts
        [ $((W_QUEUED - W_COMMITTED - W_FAILED)) -le 0 ] && break
        if [ "$W_COMMITTED" = "$last" ]; then
            still=$((still + 1))
            [ $still -ge 20 ] && break # 2 s without a commit: the rest was dropped
        else
            still=0
        fi
        last=$W_COMMITTED
        if [ $SECONDS -ge $deadline ]; then
            DRAIN=">$DRAIN_S"
            return 0
        fi
        sleep 0.1
    done
    DRAIN=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
}

for round in $(seq 1 "$ROUNDS"); do
    for load in "${LOADS[@]}"; do
        tag=r$round-$load
        base=$RESULTS/wrk-$tag
        start_servers "$tag"
        warm_and_check "$tag"
        URL[cloro-proxy]="http://$PROXY_ADDR"
        echo "$tag: fake $FAKE_ADDR, cloro-proxy $PROXY_ADDR (pid $PROXY_PID); warm-up" \
            "$WARM_S s; check batch (curl) $CHECK_MS ms, $CHECK_BYTES bytes; loadavg" \
            "$(cut -d' ' -f1-3 /proc/loadavg); proxy RSS $(($(rss_kb) / 1024)) MB, store" \
            "$(($(store_kb) / 1024)) MB" | tee -a "$RESULTS/env.txt"
        note "round $round/$ROUNDS: ${LOAD_ARGS[$load]}: warm-up ${WARMUP}s, run ${DURATION}s"
        writer_counts
        dropped0=$W_DROPPED
        run_batches "$load" "$WARMUP" "$base-warmup.txt"
        if [ "$BENCH_OK" != 1 ] && [ "$UPSTREAM" = 0 ] &&
            [ "$(field requests "$BENCH_LINE")" = 0 ] && no_errors "$BENCH_LINE"; then
            # A batch can take longer than a short warm-up on a busy machine.
            note "the warm-up completed no batch within ${WARMUP}s (no error): going on"
        elif [ "$BENCH_OK" != 1 ]; then
            cat "$base-warmup.txt" >&2
            die "the warm-up had errors, non-200s or batches not answered from the cache," \
                "upstream calls +$UPSTREAM ($BENCH_LINE)"
        fi
        thread_ticks
        loop0=$LOOP_TICKS other0=$OTHER_TICKS
        run_batches "$load" "$DURATION" "$base.txt"
        thread_ticks
        # CPU ms a batch: the loop thread, and the other threads (the writer).
        cpu_loop=$(ms_a_batch $((LOOP_TICKS - loop0)) "$(field requests "$BENCH_LINE")")
        cpu_other=$(ms_a_batch $((OTHER_TICKS - other0)) "$(field requests "$BENCH_LINE")")
        if [ "$BENCH_OK" != 1 ]; then
            FAILED=1
            note "error: ${LOAD_ARGS[$load]} had errors, non-200s or batches not answered from" \
                "the cache, or reached the upstream (+$UPSTREAM calls): $BENCH_LINE"
        fi
        # Right after the run: RSS and the writer's backlog; then let it catch up.
        rss=$(rss_kb)
        anon=$(rss_kb RssAnon)
        psi=$(cpu_psi)
        writer_counts
        echo "$CACHE_JSON" >"$base-cache-stats-end.json"
        backlog=$((W_QUEUED - W_COMMITTED - W_FAILED))
        [ "$backlog" -ge 0 ] || backlog=0
        drain
        writer_counts
        echo "$CACHE_JSON" >"$base-cache-stats-drained.json"
        task_counts
        echo "$STATS_JSON" >"$base-stats-drained.json"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
            "$round" "$load" "$(field ok_rps "$BENCH_LINE")" \
            "$(ms "$BENCH_LINE" ok_p50_us)" "$(ms "$BENCH_LINE" ok_p90_us)" \
            "$(ms "$BENCH_LINE" ok_p99_us)" \
            "$BENCH_OK" "$UPSTREAM" "$rss" "$backlog" "$((W_DROPPED - dropped0))" "$DRAIN" \
            "$(store_kb)" "$anon" "$psi" "$cpu_loop" "$cpu_other" "$(field busy "$BENCH_LINE")" \
            "$(field requests "$BENCH_LINE")" "$(ms "$BENCH_LINE" p50_us)" \
            "$(ms "$BENCH_LINE" p99_us)" >>"$ROWS"
        HWM_MB+=("$(($(rss_kb VmHWM) / 1024))")
        fake_counts
        echo "$FAKE_JSON" >"$RESULTS/fake-stats-$tag.json"
        stop_pid "$PROXY_PID"
        stop_pid "$FAKE_PID"
    done
done
echo

# --- report -----------------------------------------------------------------
awk -F'\t' -v tasks="$TASKS" -v c4="${LOAD_ARGS[c4]}" '
    function f3(v) { return v == "-" ? "-" : sprintf("%.3f", v) }
    BEGIN {
        printf "%-6s %-8s %6s %7s %5s %8s %8s %8s %5s %5s %4s %5s %5s %7s %7s %6s %6s %6s\n",
            "round", "load", "ok/s", "tasks/s", "busy", "p50 ms", "p90 ms", "p99 ms", "loop",
            "other", "up", "RSS", "anon", "backlog", "dropped", "drain", "store", "psi %"
    }
    {
        load = $2 == "c1" ? "-t1 -c1" : c4
        note = $7 == 1 ? "" : "  ERRORS"
        printf "%-6s %-8s %6.1f %7.0f %5d %8s %8s %8s %5.1f %5.1f %4d %5.0f %5.0f %7d %7d %6s %6.0f %6s%s\n",
            $1, load, $3, $3 * tasks, $18, f3($4), f3($5), f3($6), $16, $17, $8, $9 / 1024,
            $14 / 1024, $10, $11, $12, $13 / 1024, $15, note
    }' "$ROWS" >"$TMP/table.txt"

# median LOAD COL: the median over rounds, at load shape LOAD, of column COL
# (3 ok/s, 4 p50 ms, 6 p99 ms, 18 busy, 20 wrk p50 ms); "-" when the median
# round had no ok answer.
median() {
    awk -F'\t' -v load="$1" -v col="$2" '$2 == load { print ($col == "-" ? 1e18 : $col) }' \
        "$ROWS" | sort -g | awk '
            { v[++n] = $1 }
            END {
                m = n == 0 ? 1e18 : n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
                if (m >= 1e18) print "-"; else printf "%.3f", m
            }'
}
P50=$(median c1 4)
P99=$(median c1 6)
OK_RPS=$(median c1 3)
BUSY=$(median c1 18)
WRK_P50=$(median c1 20)
P50_C4=$(median c4 4)
P99_C4=$(median c4 6)
OK_RPS_C4=$(median c4 3)
BUSY_C4=$(median c4 18)
# Compared as printed (to the µs); no ok answer at all is a miss.
VERDICT=$(awk -v p="$P50" -v g="$GOAL_MS" 'BEGIN { print (p != "-" && p + 0 < g) ? "PASS" : "MISS" }')
DROPPED_ALL=$(awk -F'\t' '{ d += $11 } END { print d + 0 }' "$ROWS")
BUSY_ALL=$(awk -F'\t' '{ d += $18 } END { print d + 0 }' "$ROWS")

if [ "$ROUNDS" -gt 1 ]; then over="median over $ROUNDS rounds"; else over="one round"; fi
NOTE="(p50 and p99 of the 200 answers at -t1 -c1, $over, at $(printf '%.1f' "$OK_RPS")"
NOTE+=" batches/s, $(printf '%.0f' "$BUSY") refused busy (wrk's p50 of every answer: $WRK_P50 ms);"
NOTE+=" for information at ${LOAD_ARGS[c4]}: p50 $P50_C4 ms, p99 $P99_C4 ms,"
NOTE+=" $(printf '%.1f' "$OK_RPS_C4") batches/s, $(printf '%.0f' "$BUSY_C4") refused busy;"
NOTE+=" task records dropped by the writer: $DROPPED_ALL; the proxy's peak RSS by run:"
NOTE+=" ${HWM_MB[*]} MB)"
FINAL="async batch of $TASKS cached tasks at -t1 -c1: p50 $P50 ms, p99 $P99 ms"
FINAL+=" (goal p50 < $GOAL_MS ms): $VERDICT"
if [ "$BUSY_ALL" != 0 ]; then
    FINAL+=" ($BUSY_ALL batches refused 503 while the store writer was behind)"
fi

LEGEND="ok/s: batches a second answered 200 from the cache, tasks/s: x $TASKS; busy: batches"
LEGEND+=" refused with 503 (store writer"$'\n'"behind, Retry-After); p50..p99: latency of the"
LEGEND+=" 200 answers (the Lua script's clock); loop, other: CPU ms an answer"$'\n'"of the"
LEGEND+=" proxy's event-loop thread and of its other threads (the cache writer); up: calls the"
LEGEND+=" fake saw during"$'\n'"the run and its warm-up (must be 0); RSS: the proxy's VmRSS in MB"
LEGEND+=" right after the run (mostly LMDB map pages),"$'\n'"anon: its RssAnon in MB (heap);"
LEGEND+=" backlog: writer ops queued but not yet committed then; dropped: writer ops dropped"
LEGEND+=$'\n'"during the run and its warm-up (/_proxy/cache/stats writer.dropped); drain: seconds"
LEGEND+=" until the writer had committed"$'\n'"everything; store: the cache directory in MB after"
LEGEND+=" that; psi %: /proc/pressure/cpu some avg10 right after the run"$'\n'"(wrk and the"
LEGEND+=" proxy make some by themselves; other work on the machine raises it)"
publish_results "$LEGEND" "$NOTE" "$FINAL"
echo "$NOTE"
if [ "$FAILED" != 0 ]; then
    note "error: some runs had socket errors, timeouts, non-200s or batches not answered from" \
        "the cache, or reached the upstream (marked ERRORS above)"
    echo "$FINAL"
    exit 1
fi
echo "$FINAL"
