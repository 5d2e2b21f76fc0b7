#!/usr/bin/env bash
# tests/browser/setup.sh DIR: the browser tests' fixture. Checks that Node.js,
# npm and Debian's Chromium are there (scripts/install-deps.sh installs them)
# and installs playwright-core from npm into DIR/node_modules, once per build
# tree. Never downloads a browser: the tests drive /usr/bin/chromium.
# Anything missing is a failure with a message, never a silent skip.
set -euo pipefail
dir=${1:?usage: setup.sh DIR}
chromium=${CHROMIUM:-/usr/bin/chromium}

fail() {
  echo "browser test setup: $*" >&2
  echo "browser test setup: scripts/install-deps.sh (run by make test) installs chromium, and nodejs and npm when missing" >&2
  exit 1
}

command -v node >/dev/null 2>&1 || fail "node not found"
command -v npm >/dev/null 2>&1 || fail "npm not found"
[ -x "$chromium" ] || fail "$chromium not found (Debian package chromium)"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 18 ] || fail "node $(node --version) is too old: 18 or newer is needed"

if [ -f "$dir/node_modules/playwright-core/package.json" ]; then
  echo "browser test setup: playwright-core $(node -p "require('$dir/node_modules/playwright-core/package.json').version") already in $dir"
  exit 0
fi
# playwright-core 1.62 and later need Node 20; Debian 12's own nodejs is 18.
spec=playwright-core@1
[ "$major" -ge 20 ] || spec=playwright-core@1.61
mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{"name":"cloro-proxy-browser-tests","private":true}' >"$dir/package.json"
echo "browser test setup: npm install $spec in $dir"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
(cd "$dir" && npm install --no-save --no-audit --no-fund --loglevel=error "$spec") ||
  fail "npm install $spec failed (is the npm registry reachable?)"
[ -f "$dir/node_modules/playwright-core/package.json" ] || fail "playwright-core is not in $dir/node_modules after npm install"
echo "browser test setup: playwright-core $(node -p "require('$dir/node_modules/playwright-core/package.json').version") installed"
