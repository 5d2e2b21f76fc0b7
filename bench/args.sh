# bench/args.sh: the start every bench script shares, sourced right after it
# sets prog: die and note, and parse_args BUILD_DIR with the knobs of the
# environment (each a positive integer; defaults DURATION=10 WARMUP=1
# ROUNDS=1, and any extra NAME=DEFAULT given to parse_args). Bad usage exits 2.
# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # prog comes from, and the variables set here go to, the script

die() {
    echo "$prog: error: $*" >&2
    exit 1
}
note() { echo "$prog: $*" >&2; }

# parse_args "$@" [-- NAME=DEFAULT ...]: sets BUILD_DIR, BENCH_DIR and the knobs.
parse_args() {
    local args=() extra=() seen_sep=0 a
    for a in "$@"; do
        if [ "$a" = "--" ] && [ $seen_sep = 0 ]; then
            seen_sep=1
        elif [ $seen_sep = 1 ]; then
            extra+=("$a")
        else
            args+=("$a")
        fi
    done
    local knobs=(DURATION=10 WARMUP=1 ROUNDS=1 "${extra[@]}") usage="" k name
    for k in "${knobs[@]}"; do usage+=" $k"; done
    if [ ${#args[@]} -ne 1 ]; then
        echo "usage: $prog BUILD_DIR   (env:$usage)" >&2
        exit 2
    fi
    BUILD_DIR=${args[0]}
    for k in "${knobs[@]}"; do
        name=${k%%=*}
        printf -v "$name" '%s' "${!name:-${k#*=}}"
        [[ ${!name} =~ ^[1-9][0-9]*$ ]] || {
            echo "$prog: $name must be a positive integer" >&2
            exit 2
        }
    done
    BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
}
