# bench/lib.sh: what the bench scripts share, sourced after they set TMP (a
# scratch directory), RESULTS (where logs are kept) and die(): process
# bookkeeping (everything started is stopped on exit, logs copied, TMP
# removed), waiting for a listening line, an environment without proxies,
# nginx, wrk runs, and the start and stop of a run's fake upstream and proxy.
# shellcheck shell=bash

# --- process bookkeeping: everything started is stopped on exit -------------
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    local deadline=$((SECONDS + 5))
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
    local f
    for f in fake.log proxy.log nginx/nginx.conf nginx/nginx-error.log nginx/nginx.out; do
        if [ -f "$TMP/$f" ]; then cp "$TMP/$f" "$RESULTS/" 2>/dev/null || true; fi
    done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits (10 s at most) for the "event=listening addr=HOST:PORT" line of a
# process started with its stderr in LOG; sets LISTEN_ADDR.
wait_listening() {
    local name=$1 pid=$2 log=$3
    local deadline=$((SECONDS + 10))
    LISTEN_ADDR=
    while :; do
        LISTEN_ADDR=$(sed -n 's/.*event=listening.* addr=\([^ ]*\).*/\1/p' "$log" 2>/dev/null |
            head -n 1 || true)
        [ -n "$LISTEN_ADDR" ] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$log" >&2 || true
            die "$name exited before listening (log above)"
        fi
        if [ $SECONDS -ge $deadline ]; then
            cat "$log" >&2 || true
            die "$name did not print its listening line within 10 s (log above)"
        fi
        sleep 0.05
    done
    case $LISTEN_ADDR in
        127.0.0.1:[0-9]*) ;;
        *) die "$name listens on '$LISTEN_ADDR', expected 127.0.0.1:PORT" ;;
    esac
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# libcurl honours *_proxy variables: keep the proxy's upstream traffic local.
# shellcheck disable=SC2034 # used by the scripts that source this file
NO_PROXY_ENV=(env -u http_proxy -u HTTP_PROXY -u https_proxy -u HTTPS_PROXY
    -u all_proxy -u ALL_PROXY NO_PROXY='*' no_proxy='*')

# Starts nginx with the config TEMPLATE (@DIR@, @PORT@, @UPSTREAM@ filled in:
# its temp dir, a free port, FAKE_ADDR) on a free loopback port; sets
# NGINX_ADDR. Needs NGINX_BIN, TMP, FAKE_ADDR.
start_nginx() {
    local template=$1
    [ -r "$template" ] || die "missing $template"
    NDIR=$TMP/nginx
    mkdir -p "$NDIR"
    # As root nginx's workers run as nobody: let them into the temp dirs (nginx's
    # master creates the cache and temp dirs for its worker's user itself).
    chmod 755 "$TMP" "$NDIR"
    NGINX_ADDR=
    local port npid deadline
    for _ in $(seq 1 20); do
        port=$((20000 + RANDOM % 40000))
        port_open "$port" && continue
        sed -e "s|@DIR@|$NDIR|g" -e "s|@PORT@|$port|g" -e "s|@UPSTREAM@|$FAKE_ADDR|g" \
            "$template" >"$NDIR/nginx.conf"
        : >"$NDIR/nginx-error.log"
        "$NGINX_BIN" -p "$NDIR/" -c "$NDIR/nginx.conf" -e "$NDIR/nginx-error.log" \
            >"$NDIR/nginx.out" 2>&1 &
        npid=$!
        PIDS+=("$npid")
        deadline=$((SECONDS + 5))
        while kill -0 "$npid" 2>/dev/null && ! port_open "$port" && [ $SECONDS -lt $deadline ]; do
            sleep 0.05
        done
        if kill -0 "$npid" 2>/dev/null && port_open "$port"; then
            # shellcheck disable=SC2034 # read by the scripts that source this file
            NGINX_ADDR=127.0.0.1:$port
            return 0
        fi
        if kill -0 "$npid" 2>/dev/null; then
            cat "$NDIR/nginx.out" "$NDIR/nginx-error.log" >&2 || true
            die "nginx did not listen on 127.0.0.1:$port within 5 s (log above)"
        fi
        if grep -q 'Address already in use' "$NDIR/nginx.out" "$NDIR/nginx-error.log"; then
            continue # lost a race for the port: try another
        fi
        cat "$NDIR/nginx.out" "$NDIR/nginx-error.log" >&2 || true
        die "nginx failed to start (log above; config: $NDIR/nginx.conf)"
    done
    die "nginx: found no free port in 20 tries"
}

# field KEY LINE: the value of KEY=... in a logfmt-like line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

# run_wrk TARGET LOAD SECONDS OUT [KEY ...]: one wrk run of LUA against
# URL[TARGET] + WRK_PATH (default /v1/monitor/chatgpt) with LOAD_ARGS[LOAD];
# sets BENCH_LINE (the Lua script's summary) and BENCH_OK: 0 when the run had
# no request, or a socket error, a timeout, a non-200 or any of the extra KEYs
# counted non-zero.
# shellcheck disable=SC2034 # BENCH_OK is read by the scripts that source this file
run_wrk() {
    local target=$1 load=$2 secs=$3 out=$4
    shift 4
    # shellcheck disable=SC2086 # LOAD_ARGS holds two words on purpose
    if ! timeout -k 5 $((secs + 30)) wrk ${LOAD_ARGS[$load]} -d"${secs}s" --timeout 5s \
        --latency -s "$LUA" "${URL[$target]}${WRK_PATH:-/v1/monitor/chatgpt}" >"$out" 2>&1; then
        cat "$out" >&2 || true
        die "wrk failed or overran against $target ($load); output above"
    fi
    BENCH_LINE=$(grep -m 1 '^BENCH ' "$out" || true)
    [ -n "$BENCH_LINE" ] || die "no BENCH line from $(basename "$LUA") in $out"
    BENCH_OK=1
    local k
    for k in non200 connect read write status timeout "$@"; do
        if [ "$(field "$k" "$BENCH_LINE")" != 0 ]; then
            BENCH_OK=0
        fi
    done
    if [ "$(field requests "$BENCH_LINE")" = 0 ]; then
        BENCH_OK=0
    fi
}

# --- servers of one run: a fake upstream and a cloro-proxy in front of it ----
# forget_pid PID: takes PID off PIDS (it has been waited for).
forget_pid() {
    local p keep=()
    for p in "${PIDS[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# stop_pid PID: stops one process started here (TERM, KILL after 5 s) and
# takes it off PIDS. STOP_STATUS is its exit status (143 when TERM ended it
# without a handler, 137 when it had to be killed).
# shellcheck disable=SC2034 # STOP_STATUS is read by the scripts that source this file
stop_pid() {
    local pid=$1 deadline=$((SECONDS + 5))
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    STOP_STATUS=0
    wait "$pid" 2>/dev/null || STOP_STATUS=$?
    forget_pid "$pid"
}

# start_fake TAG ARG...: the fake upstream (FAKE_BIN) on a free loopback port,
# accepting KEY, with the ARGs (its knobs); log RESULTS/fake-TAG.log. Sets
# FAKE_PID and FAKE_ADDR.
# shellcheck disable=SC2153 # FAKE_BIN and KEY come from the script
start_fake() {
    local tag=$1
    shift
    "$FAKE_BIN" --listen 127.0.0.1:0 --api-key "$KEY" "$@" >"$RESULTS/fake-$tag.log" 2>&1 &
    FAKE_PID=$!
    PIDS+=("$FAKE_PID")
    wait_listening "fake upstream ($tag)" "$FAKE_PID" "$RESULTS/fake-$tag.log"
    FAKE_ADDR=$LISTEN_ADDR
}

# start_proxy TAG ARG...: cloro-proxy (PROXY_BIN) on a free loopback port in
# front of FAKE_ADDR with an empty cache in TMP/cache, the key KEY (from
# CLORO_API_KEY), no access log (--log-level info then prints only the
# start-up lines and warnings), no *_proxy variable, and the ARGs; log
# RESULTS/proxy-TAG.log. env execs the proxy: PROXY_PID is the proxy's pid.
# Sets PROXY_PID and PROXY_ADDR.
# shellcheck disable=SC2153,SC2034 # PROXY_BIN and KEY come from the script, PROXY_ADDR goes to it
start_proxy() {
    local tag=$1
    shift
    rm -rf "$TMP/cache"
    mkdir -p "$TMP/cache"
    "${NO_PROXY_ENV[@]}" CLORO_API_KEY="$KEY" "$PROXY_BIN" serve --listen 127.0.0.1:0 \
        --upstream "http://$FAKE_ADDR" --cache-dir "$TMP/cache" --access-log false \
        --log-level info "$@" >"$RESULTS/proxy-$tag.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_listening "cloro-proxy ($tag)" "$PROXY_PID" "$RESULTS/proxy-$tag.log"
    PROXY_ADDR=$LISTEN_ADDR
}

# run_header: the first lines of a run's description (RUN_ID, the date, the
# host with its load average now, the cpu, the commit and whether the tree
# has local changes).
run_header() {
    echo "run: $RUN_ID"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -srm), $(nproc) cpus, loadavg before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "commit: $(git -C "$BENCH_DIR/.." rev-parse --short HEAD 2>/dev/null || echo unknown)$(
        git -C "$BENCH_DIR/.." diff --quiet HEAD 2>/dev/null || echo ' (+ local changes)')"
}

# Writes the run's results: table.txt (the table in $TMP/table.txt, a blank
# line, then each argument as a line), summary.txt (env.txt + table.txt) and
# the results/latest link; then prints the table and where the results are.
publish_results() {
    {
        cat "$TMP/table.txt"
        echo
        printf '%s\n' "$@"
    } >"$RESULTS/table.txt"
    cat "$RESULTS/env.txt" "$RESULTS/table.txt" >"$RESULTS/summary.txt"
    ln -sfn "$RUN_ID" "$BENCH_DIR/results/latest"
    cat "$TMP/table.txt"
    echo
    echo "results: $RESULTS"
}
