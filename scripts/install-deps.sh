#!/usr/bin/env bash
# Installs the Debian packages cloro-proxy needs to build, test and benchmark,
# and only those that are missing, so running it twice is a no-op.
# Uses apt-get directly as root, or through sudo otherwise.
set -euo pipefail

# Build and run: libevent (evhttp), libcurl (upstream), LMDB (cache),
# jansson (JSON), OpenSSL (hashing), libinih (config), cmocka (unit tests),
# zlib (captured HTML artifacts are stored and served gzip-compressed).
packages=(
  build-essential cmake pkg-config
  libevent-dev libcurl4-openssl-dev liblmdb-dev libjansson-dev
  libssl-dev libinih-dev libcmocka-dev uuid-dev
  zlib1g-dev
  curl
)
# tests/fuzz: libFuzzer targets, built with clang and its runtime.
packages+=(clang libclang-rt-14-dev)
# tests/browser: the status page in headless Chromium (Debian's, never a
# downloaded build), driven by playwright-core from npm. Node.js and npm only
# when missing: a machine may already have its own (nodesource's bundles npm).
packages+=(chromium)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
# bench/ drives its load with wrk (the soak is a test too); the benchmarks
# compare the proxy side by side with nginx.
packages+=(wrk)
if [ "${WITH_BENCH:-0}" = 1 ]; then
  packages+=(nginx-light)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "install-deps: missing ${missing[*]}; run as root or install sudo" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
