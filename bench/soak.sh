#!/usr/bin/env bash
# soak.sh BUILD_DIR: a bounded soak of cloro-proxy under a mixed workload.
# Does the proxy keep its memory and file descriptors flat when it runs for a
# long time? (issue 10, "Soak"; CI: 60 s, by hand: an hour.)
#
# All on 127.0.0.1: the fake cloro upstream (20 ms + up to 10 ms of jitter a
# call, async tasks of 300 ms, nothing tripping but the injected faults) and
# cloro-proxy in front of it (a temp cache bounded by --max-cache-bytes
# SOAK_CACHE_MB MiB, so that the store evicts; --upstream-timeout 5s, so that
# stalled calls end). KEYS prompts are cached first; then, for SOAK_SECONDS,
# in intervals of 10 s, one wrk process a stream of bench/soak.lua runs in
# parallel (each interval opens new connections: client churn on top):
#   hit       SOAK_HIT_CONNS connections asking the cached prompts (pause
#             SOAK_HIT_PACE_MS ms between two requests of a connection, 0: none)
#   miss      4 connections, a new prompt each time (stored; evicted later)
#   coalesce  8 connections, one identical new prompt every 200 ms at once
#   async     2 connections: POST /v1/async/task, then polls until it ends
#   artifact  2 connections: answers with include.html, then GET of the
#             /_proxy/artifacts/ page each answer links to
#   fault     2 connections, prompts with the fake's fault markers (500, reset,
#             reset mid-body, slow body, 429, 503)
# and the fake injects random faults into ~4-6 % of the monitor calls it gets
# (fail_500, fail_503, fail_429, reset at 1 % each; and 0.5 % each of
# reset_mid_body, garbage, slow_drip and 0.2 % stall where the fake has
# those knobs).
#
# After each interval one line: elapsed s, requests/s and the p99 of the
# interval (every stream's latencies merged), the proxy's VmRSS, its
# RssAnon (heap) and RssFile (mapped files: mostly the LMDB map), the store on
# disk, the median count of its open fds (/proc/PID/fd) during the
# interval, and the answers by status. After the load
# the proxy must drain (nothing in flight or queued within 20 s) and exit 0 on
# SIGTERM (under ASan, LeakSanitizer runs then), with no sanitizer report in
# its log.
#
# The verdict, over the samples taken after warm-up (the first interval, and
# every sample before 20 % of SOAK_SECONDS, are warm-up):
#   fds flat:  the median count of each interval (counted every 0.25 s,
#              but in its first and last second) is its level, under the
#              connections that come and go; the median level of the last
#              third of the samples exceeds that of the first third by at most
#              SOAK_FD_SLACK (8) (a burst of slow calls raises one interval's
#              level for a while, a leak every later one); and once the load
#              is over and drained, at most SOAK_FD_SLACK more than before it
#   heap flat: RssAnon max - min <= max(SOAK_RSS_SLACK_MB (8) MB, 10 % of min)
#   map flat:  RssFile growth <= the store's growth on disk + SOAK_RSS_SLACK_MB
#              (task records, artifact pages and usage rows are never evicted,
#              by design: the map's resident pages may grow with them, no more)
# and no request unanswered (wrk socket errors or timeouts), no unexpected
# status (anything but 200 and the fault statuses 429/500/502/503/504, or a
# non-200 hit), the drain and the clean exit above. PASS exits 0, FAIL 1,
# bad usage 2. Everything started is stopped on exit.
#
# Environment: SOAK_SECONDS (default 60), SOAK_CACHE_MB (32), SOAK_HIT_CONNS
# (4), SOAK_HIT_PACE_MS (0), SOAK_FD_SLACK (8), SOAK_RSS_SLACK_MB (8),
# FAKE_BIN and PROXY_BIN (default under BUILD_DIR), RESULTS_ROOT (where the
# run's directory goes, default bench/results). DURATION, WARMUP and ROUNDS
# (the other benches' knobs) are not used.
set -euo pipefail

INTERVAL_S=10
KEY=sk_live_bench
KEYS=32           # prompts cached before the load, asked by the hit stream
WRK_TIMEOUT_S=8   # a request unanswered this long counts as a timeout
DRAIN_S=20        # how long the proxy may take to finish what is in flight
WARMUP_PCT=20     # samples before this share of SOAK_SECONDS are warm-up
RSS_SLACK_PCT=10
FD_EVERY=0.25     # s between two fd counts
FD_EDGE_US=1000000 # the counts of an interval's first and last second are left out
STREAMS=(         # name connections pause-ms (hit: from the env); a wrk thread each
    "hit HIT_CONNS HIT_PACE"
    "miss 4 40"
    "coalesce 8 0"
    "async 2 250"
    "artifact 2 250"
    "fault 2 500"
)
# Random faults of the fake (fraction of monitor calls); the second set only
# where the fake has those knobs.
FAULTS='"fail_500":0.01,"fail_503":0.01,"fail_429":0.01,"reset":0.01'
FAULTS_MORE='"reset_mid_body":0.005,"garbage":0.005,"slow_drip":0.005,"stall":0.002'

prog=soak.sh
# shellcheck source=bench/args.sh
. "$(dirname "${BASH_SOURCE[0]}")/args.sh"
parse_args "$@" -- SOAK_SECONDS=60 SOAK_CACHE_MB=32 SOAK_HIT_CONNS=4 SOAK_FD_SLACK=8 \
    SOAK_RSS_SLACK_MB=8
SOAK_HIT_PACE_MS=${SOAK_HIT_PACE_MS:-0}
[[ $SOAK_HIT_PACE_MS =~ ^(0|[1-9][0-9]*)$ ]] ||
    { echo "$prog: SOAK_HIT_PACE_MS must be 0 or a positive integer" >&2; exit 2; }
# shellcheck disable=SC2153 # SOAK_SECONDS is set by parse_args
[ "$SOAK_SECONDS" -ge $((3 * INTERVAL_S)) ] ||
    { echo "$prog: SOAK_SECONDS must be at least $((3 * INTERVAL_S))" >&2; exit 2; }

LUA=$BENCH_DIR/soak.lua
FAKE_BIN=${FAKE_BIN:-$BUILD_DIR/tests/fake_cloro/fake_cloro}
PROXY_BIN=${PROXY_BIN:-$BUILD_DIR/proxy/cloro-proxy}
RESULTS_ROOT=${RESULTS_ROOT:-$BENCH_DIR/results}

# --- prerequisites ----------------------------------------------------------
command -v wrk >/dev/null 2>&1 ||
    die "wrk is not installed: 'apt-get install wrk' (scripts/install-deps.sh installs it)"
command -v curl >/dev/null 2>&1 || die "curl is required (warm-up, stats)"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is required"
[ -x "$FAKE_BIN" ] || die "fake upstream not found at $FAKE_BIN: build first"
[ -x "$PROXY_BIN" ] || die "cloro-proxy not found at $PROXY_BIN: build first"
[ -r "$LUA" ] || die "missing $LUA"
[ -n "${EPOCHREALTIME:-}" ] || die "bash 5 or later is required (EPOCHREALTIME)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cloro-soak.XXXXXX")
RUN_ID=soak-$(date +%Y%m%d-%H%M%S)
RESULTS=$RESULTS_ROOT/$RUN_ID
mkdir -p "$RESULTS"

# Process bookkeeping, wait_listening, start_fake, start_proxy, stop_pid.
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
CURL=(curl -sS --noproxy '*' --max-time 10)

# --- servers ----------------------------------------------------------------
start_fake soak --log-level warn --latency-ms 20 --jitter-ms 10 --concurrency-limit 1000 \
    --rate-limit 100000000 --credits 1000000000000000 --task-duration-ms 300 --retry-after 1 \
    --artifact-ttl-s 3600
start_proxy soak --artifact-hosts "$FAKE_ADDR" --max-cache-bytes "${SOAK_CACHE_MB}MiB" \
    --upstream-timeout 5s --max-concurrency 64 --rate-limit-per-endpoint 0

{
    run_header
    echo "proxy: $PROXY_BIN (pid $PROXY_PID, $PROXY_ADDR); fake: $FAKE_ADDR"
    echo "settings: SOAK_SECONDS=$SOAK_SECONDS SOAK_CACHE_MB=$SOAK_CACHE_MB" \
        "SOAK_HIT_CONNS=$SOAK_HIT_CONNS SOAK_HIT_PACE_MS=$SOAK_HIT_PACE_MS" \
        "SOAK_FD_SLACK=$SOAK_FD_SLACK SOAK_RSS_SLACK_MB=$SOAK_RSS_SLACK_MB" \
        "ASAN_OPTIONS=${ASAN_OPTIONS:-}"
} | tee "$RESULTS/env.txt"

# --- warm-up: the hit stream's prompts, before any fault is injected ------
for k in $(seq 1 "$KEYS"); do
    status=$("${CURL[@]}" -o /dev/null -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' -H "Authorization: Bearer $KEY" \
        --data-binary "{\"prompt\":\"soak hit $k\",\"country\":\"US\"}" \
        "http://$PROXY_ADDR/v1/monitor/chatgpt") || status=000
    [ "$status" = 200 ] || die "warm-up call $k answered $status"
done
faults="{$FAULTS"
if "${CURL[@]}" "http://$FAKE_ADDR/_fake/config" | grep -q '"garbage"'; then
    faults+=",$FAULTS_MORE"
fi
faults+="}"
"${CURL[@]}" -o /dev/null -X POST --data-binary "$faults" "http://$FAKE_ADDR/_fake/config" ||
    die "cannot set the fake's faults"
echo "faults: $faults" | tee -a "$RESULTS/env.txt"

# --- sampling ---------------------------------------------------------------
# sample: sets RSS, ANON, FILE (kB, /proc/PID/status), FDS, STORE (kB on
# disk of the cache dir); appends /_proxy/stats to RESULTS/stats.jsonl.
sample() {
    kill -0 "$PROXY_PID" 2>/dev/null || die "cloro-proxy (pid $PROXY_PID) has exited; see its log"
    local status _
    status=$(<"/proc/$PROXY_PID/status")
    RSS=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' <<<"$status")
    ANON=$(sed -n 's/^RssAnon:[[:space:]]*\([0-9]*\) kB/\1/p' <<<"$status")
    FILE=$(sed -n 's/^RssFile:[[:space:]]*\([0-9]*\) kB/\1/p' <<<"$status")
    FDS=0
    for _ in /proc/"$PROXY_PID"/fd/*; do FDS=$((FDS + 1)); done
    STORE=$(du -sk "$TMP/cache" | cut -f1)
    { "${CURL[@]}" "http://$PROXY_ADDR/_proxy/stats" || echo '{}'; echo; } >>"$RESULTS/stats.jsonl"
}
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# p99 FILE...: the 99th percentile (ms) of merged "µs count" histograms.
p99() {
    sort -n "$@" | awk '{ v[NR] = $1; c[NR] = $2; t += $2 }
        END {
            if (t == 0) { print "-"; exit }
            for (i = 1; i <= NR; i++) { s += c[i]; if (s >= t * 0.99) break }
            printf "%.3f\n", v[i] / 1000
        }'
}

sample
IDLE_FDS=$FDS IDLE_RSS=$RSS # before the load, once warmed up

# --- the load -----------------------------------------------------------------
ROWS=$RESULTS/intervals.tsv
printf 'elapsed_s\treq_s\tp99_ms\trss_kb\tanon_kb\tfile_kb\tstore_kb\tfds\tfds_range\tok\tf429\tf500\tf502\tf503\tf504\tunexpected\tunanswered\n' >"$ROWS"
HEADER=$(printf '%7s %8s %8s %7s %7s %7s %8s %5s %7s %20s %5s %5s' elapsed req/s 'p99 ms' 'RSS MB' \
    'heap MB' 'file MB' 'store MB' fds 200 '429/500/502/503/504' other lost)
echo
echo "$HEADER" | tee "$RESULTS/table.txt"
mkdir -p "$TMP/hist" "$TMP/wrk"
N_INT=$(((SOAK_SECONDS + INTERVAL_S - 1) / INTERVAL_S))
FIRST_UNEXPECTED=-

# start_streams I SECS: one wrk process a stream for interval I; each runs
# SECS s (SIGINT then: it prints its BENCH line; KILL 10 s later). Sets WRK_PIDS.
start_streams() {
    local i=$1 secs=$2 s name conns pace
    WRK_PIDS=()
    for s in "${STREAMS[@]}"; do
        read -r name conns pace <<<"$s"
        [ "$conns" = HIT_CONNS ] && conns=$SOAK_HIT_CONNS
        [ "$pace" = HIT_PACE ] && pace=$SOAK_HIT_PACE_MS
        timeout --preserve-status -s INT -k 10 "$secs" wrk -t"$conns" -c"$conns" \
            -d$((secs + 60))s --timeout "${WRK_TIMEOUT_S}s" -s "$LUA" \
            "http://$PROXY_ADDR/v1/monitor/chatgpt" \
            -- "$name" "$RUN_ID-i$i" "$TMP/hist/$i-$name" "$pace" "$KEYS" \
            >"$TMP/wrk/$i-$name.txt" 2>&1 &
        WRK_PIDS+=($!)
    done
    PIDS+=("${WRK_PIDS[@]}")
}

# wait_streams I: waits for the wrk processes of interval I.
wait_streams() {
    local p rc
    for p in "${WRK_PIDS[@]}"; do
        rc=0
        wait "$p" || rc=$?
        forget_pid "$p"
        [ "$rc" = 0 ] || { cat "$TMP"/wrk/"$1"-*.txt >&2; die "a wrk run of interval $1 failed ($rc)"; }
    done
}

# report I ELAPSED SECS: sums interval I's BENCH lines and the sample taken
# at its end (S_* of that interval) into a row of ROWS and of the table.
report() {
    local i=$1 elapsed=$2 secs=$3 lines req ok f429 f500 f502 f503 f504 unexp lost fu rps p
    lines=$(cat "$TMP"/wrk/"$i"-*.txt | grep '^BENCH ' || true)
    [ "$(grep -c . <<<"$lines")" = "${#STREAMS[@]}" ] ||
        { cat "$TMP"/wrk/"$i"-*.txt >&2; die "a stream printed no BENCH line in interval $i"; }
    cat "$TMP"/wrk/"$i"-*.txt >>"$RESULTS/wrk.txt"
    read -r req ok f429 f500 f502 f503 f504 unexp lost fu < <(awk '
        { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] += kv[2]
              if (kv[1] == "first_unexpected" && kv[2] != "-" && fu == "") fu = kv[2] } }
        END { print v["requests"], v["ok"], v["f429"], v["f500"], v["f502"], v["f503"], v["f504"],
                  v["unexpected"], v["connect"] + v["read"] + v["write"] + v["timeout"],
                  fu == "" ? "-" : fu }' <<<"$lines")
    [ "$FIRST_UNEXPECTED" != - ] || FIRST_UNEXPECTED=$fu
    rps=$(awk -v r="$req" -v d="$secs" 'BEGIN { printf "%.1f", r / d }')
    p=$(p99 "$TMP"/hist/"$i"-*)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$elapsed" \
        "$rps" "$p" "$S_RSS" "$S_ANON" "$S_FILE" "$S_STORE" "$S_FDS" "$S_FD_RANGE" "$ok" "$f429" "$f500" \
        "$f502" "$f503" "$f504" "$unexp" "$lost" >>"$ROWS"
    printf '%6ss %8s %8s %7s %7s %7s %8s %5s %7s %20s %5s %5s\n' "$elapsed" "$rps" "$p" \
        "$(mb "$S_RSS")" "$(mb "$S_ANON")" "$(mb "$S_FILE")" "$(mb "$S_STORE")" \
        "$S_FDS" "$ok" \
        "$f429/$f500/$f502/$f503/$f504" "$unexp" "$lost" | tee -a "$RESULTS/table.txt"
}

# The fds are counted every FD_EVERY s from a sampler of its own: what an
# instant shows includes the connections of requests in flight and of
# clients that come and go; the median count of an interval is its level,
# which a leak raises for good. The first and last second of an interval are
# left out: wrk connects and disconnects then.
FD_LOG=$TMP/fds.log
(
    for _ in $(seq 1 $(((SOAK_SECONDS + 60) * 4))); do
        n=0
        for _ in /proc/"$PROXY_PID"/fd/*; do n=$((n + 1)); done
        echo "${EPOCHREALTIME/./} $n"
        sleep "$FD_EVERY"
    done
) >"$FD_LOG" &
PIDS+=($!)
FD_SAMPLER=$!
# fd_level FROM TO (µs): "median min-max" of the fd counts sampled between them.
fd_level() {
    awk -v a="$1" -v b="$2" '$1 >= a && $1 <= b { print $2 }' "$FD_LOG" | sort -n |
        awk '{ v[++n] = $1 } END { if (!n) print 0, "-"; else print v[int((n + 1) / 2)], v[1] "-" v[n] }'
}

# Interval I's streams run while interval I-1 is summed up: no gap in the load.
T0=${EPOCHREALTIME/./}
prev=()
for i in $(seq 1 "$N_INT"); do
    secs=$((SOAK_SECONDS - (i - 1) * INTERVAL_S))
    [ "$secs" -le "$INTERVAL_S" ] || secs=$INTERVAL_S
    t_start=${EPOCHREALTIME/./}
    start_streams "$i" "$secs"
    [ ${#prev[@]} = 0 ] || report "${prev[@]}"
    wait_streams "$i"
    t_end=${EPOCHREALTIME/./}
    sample
    S_RSS=$RSS S_ANON=$ANON S_FILE=$FILE S_STORE=$STORE
    read -r S_FDS S_FD_RANGE < <(fd_level $((t_start + FD_EDGE_US)) $((t_end - FD_EDGE_US)))
    prev=("$i" $(((t_end - T0) / 1000000))
        "$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')")
done
report "${prev[@]}"
kill "$FD_SAMPLER" 2>/dev/null || true
wait "$FD_SAMPLER" 2>/dev/null || true
forget_pid "$FD_SAMPLER"
cp "$FD_LOG" "$RESULTS/fds.log"
LOAD_S=$(((${EPOCHREALTIME/./} - T0) / 1000000))

# --- drain, then a clean exit -------------------------------------------------
# in_flight counts the stats request itself.
drained=0
deadline=$((SECONDS + DRAIN_S))
while [ $SECONDS -lt $deadline ]; do
    json=$("${CURL[@]}" "http://$PROXY_ADDR/_proxy/stats" || true)
    if [[ $json =~ \"in_flight\":([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -le 1 ] &&
        [[ $json =~ \"queued\":0[,}] ]] && [[ $json =~ \"upstream\":\{[^}]*\"in_flight\":0[,}] ]]; then
        drained=1
        break
    fi
    sleep 0.2
done
echo "$json" >"$RESULTS/stats-drained.json"
cache_json=$("${CURL[@]}" "http://$PROXY_ADDR/_proxy/cache/stats" 2>/dev/null || true)
echo "$cache_json" >"$RESULTS/cache-stats.json"
# cache_num NAME [MB]: the first number NAME in the cache stats, in MB with
# MB ("-" when absent).
cache_num() {
    if [[ $cache_json =~ \"$1\":([0-9]+) ]]; then
        if [ -n "${2:-}" ]; then mb $((BASH_REMATCH[1] / 1024)); else echo "${BASH_REMATCH[1]}"; fi
    else
        echo -
    fi
}
STORE_LINE="store: $(cache_num entries) entries, $(cache_num bytes MB) MB of records"
STORE_LINE+=" (bound $SOAK_CACHE_MB MiB, map $(cache_num map_bytes MB) MB),"
STORE_LINE+=" $(cache_num evictions) evicted, $(cache_num dropped) writes dropped,"
STORE_LINE+=" $(cache_num store_errors) store errors; on disk $(mb "$(du -sk "$TMP/cache" | cut -f1)") MB"
"${CURL[@]}" "http://$FAKE_ADDR/_fake/stats" >"$RESULTS/fake-stats.json" 2>/dev/null || true
sample
DRAINED_FDS=$FDS DRAINED_RSS=$RSS
stop_pid "$PROXY_PID"
EXIT_STATUS=$STOP_STATUS
stop_pid "$FAKE_PID"
SANITIZER=$(grep -c -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$RESULTS/proxy-soak.log" || true)

# --- verdict ------------------------------------------------------------------
warm_s=$((SOAK_SECONDS * WARMUP_PCT / 100))
# fd_first/fd_last: the median of the fd levels of the first and of the last
# third of the samples after warm-up (a burst of slow calls raises one
# interval's level; a leak raises every later one).
read -r n_after fd_min fd_max fd_first fd_last anon_min anon_max file0 file1 store0 store1 < <(
    awk -F'\t' -v w="$warm_s" '
    function med(from, to,    a, i, j, k, x) {
        k = 0
        for (i = from; i <= to; i++) a[++k] = fd[i]
        for (i = 2; i <= k; i++)
            for (j = i; j > 1 && a[j - 1] > a[j]; j--) { x = a[j]; a[j] = a[j - 1]; a[j - 1] = x }
        return k ? a[int((k + 1) / 2)] : 0
    }
    NR <= 2 || $1 + 0 < w { next }
    { n++; fd[n] = $8
      if (n == 1 || $8 < fdmin) fdmin = $8; if ($8 > fdmax) fdmax = $8
      if (n == 1 || $5 < amin) amin = $5; if ($5 > amax) amax = $5
      if (n == 1) { f0 = $6; s0 = $7 }; f1 = $6; s1 = $7 }
    END { t = int((n + 2) / 3)
          print n + 0, fdmin + 0, fdmax + 0, med(1, t), med(n - t + 1, n), amin + 0, amax + 0,
              f0 + 0, f1 + 0, s0 + 0, s1 + 0 }' "$ROWS")
read -r total_ok total_fault total_unexp total_lost < <(awk -F'\t' 'NR > 1 {
    ok += $10; f += $11 + $12 + $13 + $14 + $15; u += $16; l += $17 }
    END { print ok + 0, f + 0, u + 0, l + 0 }' "$ROWS")
total_req=$((total_ok + total_fault + total_unexp))
slack_kb=$((SOAK_RSS_SLACK_MB * 1024))
anon_limit=$(( slack_kb > anon_min * RSS_SLACK_PCT / 100 ? slack_kb : anon_min * RSS_SLACK_PCT / 100 ))
fd_growth=$((fd_last - fd_first))
anon_growth=$((anon_max - anon_min))
file_growth=$((file1 - file0))
store_growth=$((store1 - store0))
[ "$store_growth" -ge 0 ] || store_growth=0

why=()
[ "$n_after" -ge 2 ] || why+=("only $n_after samples after warm-up")
[ "$fd_growth" -le "$SOAK_FD_SLACK" ] ||
    why+=("fds not flat: level $fd_first in the first third after warm-up, $fd_last in the last (limit: + $SOAK_FD_SLACK)")
[ "$anon_growth" -le "$anon_limit" ] ||
    why+=("heap not flat: RssAnon $(mb "$anon_min")..$(mb "$anon_max") MB (limit +$(mb "$anon_limit") MB)")
[ "$file_growth" -le $((store_growth + slack_kb)) ] ||
    why+=("mapped files grew $(mb "$file_growth") MB, the store $(mb "$store_growth") MB (limit: store + $SOAK_RSS_SLACK_MB MB)")
[ "$total_lost" = 0 ] || why+=("$total_lost requests unanswered (wrk socket errors or timeouts)")
[ "$total_unexp" = 0 ] || why+=("$total_unexp unexpected answers (first: $FIRST_UNEXPECTED)")
[ "$drained" = 1 ] || why+=("requests still in flight or queued ${DRAIN_S} s after the load stopped")
[ "$DRAINED_FDS" -le $((IDLE_FDS + SOAK_FD_SLACK)) ] ||
    why+=("fds once drained: $DRAINED_FDS, before the load $IDLE_FDS (limit: + $SOAK_FD_SLACK)")
[ "$EXIT_STATUS" = 0 ] || why+=("cloro-proxy exited $EXIT_STATUS on SIGTERM")
[ "$SANITIZER" = 0 ] || why+=("$SANITIZER sanitizer reports in the proxy's log")

VERDICT=PASS
[ ${#why[@]} = 0 ] || VERDICT=FAIL
{
    echo
    echo "elapsed: s since the load started, at the end of each interval; req/s and p99: the interval's"
    echo "answers (every stream's latencies merged, within 1 %); RSS/heap/file: VmRSS/RssAnon/RssFile of the"
    echo "proxy; store: its cache dir on disk; fds: median count in the interval (every ${FD_EVERY} s,"
    echo "edges left out); 200, 429/500/502/503/504: answers by status; other: unexpected answers;"
    echo "lost: wrk socket errors and timeouts (${WRK_TIMEOUT_S} s)"
    echo "load: $LOAD_S s, $total_req answers ($(awk -v r="$total_req" -v s="$LOAD_S" 'BEGIN { printf "%.1f", s ? r / s : 0 }')/s)," \
        "p99 $(p99 "$TMP"/hist/*) ms over the run; $total_fault fault statuses," \
        "$total_unexp unexpected, $total_lost unanswered"
    echo "after warm-up (samples at >= ${warm_s} s and past the first interval: $n_after):" \
        "fd level $fd_first -> $fd_last (first -> last third, limit + $SOAK_FD_SLACK; range $fd_min..$fd_max);" \
        "heap $(mb "$anon_min")..$(mb "$anon_max") MB (+$(mb "$anon_growth"), limit +$(mb "$anon_limit"));" \
        "mapped files $(mb "$file0") -> $(mb "$file1") MB (+$(mb "$file_growth"); store +$(mb "$store_growth"), limit store + $SOAK_RSS_SLACK_MB)"
    echo "$STORE_LINE"
    echo "drained: $([ "$drained" = 1 ] && echo yes || echo no) (fds then $DRAINED_FDS, before the load $IDLE_FDS;" \
        "RSS then $(mb "$DRAINED_RSS") MB, before the load $(mb "$IDLE_RSS") MB);" \
        "exit on SIGTERM: $EXIT_STATUS; sanitizer reports: $SANITIZER"
    for w in "${why[@]}"; do echo "FAIL: $w"; done
    echo "soak verdict (RSS and fds flat after warm-up, every request answered): $VERDICT"
} | tee -a "$RESULTS/table.txt"
cat "$RESULTS/env.txt" "$RESULTS/table.txt" >"$RESULTS/summary.txt"
[ "$RESULTS_ROOT" != "$BENCH_DIR/results" ] || ln -sfn "$RUN_ID" "$BENCH_DIR/results/latest"
echo "results: $RESULTS"
[ "$VERDICT" = PASS ]
