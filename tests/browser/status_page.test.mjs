// status_page.test.mjs: the status page (GET /_proxy/) in headless Chromium.
// Starts fake_cloro and cloro-proxy as processes on loopback ports, makes a
// miss, a hit and errors through the proxy, opens the page in Debian's
// Chromium (driven by playwright-core, never a downloaded browser), checks
// that every number it shows is what /_proxy/stats, /_proxy/cache/stats and
// /_proxy/recent answer at that moment, then makes new requests (slow ones,
// one in flight and one queued, and a fresh miss) and checks that the page
// follows them without a reload. Run by ctest (browser_status_page) with the
// binaries' paths in CLORO_PROXY_BIN and FAKE_CLORO_BIN, and playwright-core
// under BROWSER_NODE_DIR (installed by setup.sh, the browser_setup fixture).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

const KEY = 'sk_live_browsertest01';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this test through ctest (browser_status_page)`);
  return v;
};
const require = createRequire(join(env('BROWSER_NODE_DIR'), 'package.json'));
const { chromium } = require('playwright-core');

// The ids whose data-value must equal the JSON endpoints' numbers.
function expectedValues(stats, cache, recent) {
  const n = (v) => (typeof v === 'number' ? String(v) : '');
  const saver = stats.tasks?.credit_saver?.credits_saved;
  const minutes = recent.per_minute.reduce((sum, m) => sum + m.requests, 0);
  return {
    'hit-ratio': n(cache.hit_ratio),
    'cache-hits': n(cache.hits),
    'cache-misses': n(cache.misses),
    'cache-coalesced': n(cache.coalesced),
    'cache-stale': n(cache.stale),
    'cache-bypass': n(cache.bypass),
    'cache-entries': n(cache.entries),
    'credits-saved-cache': n(cache.credits_saved),
    'credits-saved-async': n(saver),
    'credits-saved': n(cache.credits_saved + (saver ?? 0)),
    'in-flight': n(stats.limits.in_flight),
    'queued': n(stats.limits.queued),
    'concurrency-limit': n(stats.limits.concurrency_limit),
    'rejected': n(stats.limits.rejected),
    'upstream-calls': n(stats.upstream.calls),
    'proxy-errors': n(stats.proxy_errors),
    'latency-hit-p50': n(stats.latency?.hit?.p50_ms),
    'latency-upstream-p50': n(stats.latency?.upstream?.p50_ms),
    'artifacts-pending': n(stats.artifacts?.pending),
    'artifacts-captured': n(stats.artifacts?.captured),
    'artifacts-lost': n(stats.artifacts?.lost),
    'tasks-live': n(stats.tasks?.live),
    'tasks-completed': n(stats.tasks?.completed),
    'tasks-failed': n(stats.tasks?.failed),
    'requests-total': n(recent.requests_total),
    'requests-last-hour': n(minutes),
    'recent-count': n(recent.requests.length),
    'mode': typeof stats.mode === 'string' ? stats.mode : '',
  };
}

const IDS = Object.keys(expectedValues({ limits: {}, upstream: {} }, {}, { per_minute: [], requests: [] }));

// ---- processes ------------------------------------------------------------

const procs = [];

function start(name, argv, extraEnv = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      env: { ...process.env, ...extraEnv },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const proc = { name, child, log: '', url: null, exit: null };
    procs.push(proc);
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 15 s:\n${proc.log}`)), 15000);
    child.stderr.on('data', (chunk) => {
      if (proc.log.length < 4 << 20) proc.log += chunk;
      const m = /event=listening addr=(\S+)/.exec(proc.log);
      if (m && proc.url === null) {
        proc.url = `http://${m[1]}`;
        clearTimeout(timer);
        resolve(proc);
      }
    });
    child.on('exit', (code, signal) => {
      proc.exit = code ?? 128;
      if (proc.url === null) {
        clearTimeout(timer);
        reject(new Error(`${name} exited (${code ?? signal}) before listening:\n${proc.log}`));
      }
    });
  });
}

async function stop(proc) {
  if (proc.exit !== null) return proc.exit;
  const exited = new Promise((resolve) => proc.child.once('exit', (code, signal) => resolve(code ?? 128 + (signal === 'SIGKILL' ? 9 : 15))));
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), 10000);
  const code = await exited;
  clearTimeout(timer);
  proc.exit = code;
  return code;
}

// ---- HTTP -----------------------------------------------------------------

let fake, proxy, browser, workdir;

async function call(method, path, body, headers = {}, base = proxy.url) {
  const res = await fetch(base + path, {
    method,
    headers: body !== undefined ? { 'Content-Type': 'application/json', ...headers } : headers,
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text };
}

async function json(path, headers = {}, base = proxy.url) {
  const res = await fetch(base + path, { headers });
  assert.equal(res.status, 200, `GET ${path}`);
  return res.json();
}

async function snapshot() {
  const [stats, cache, recent] = await Promise.all([json('/_proxy/stats'), json('/_proxy/cache/stats'), json('/_proxy/recent')]);
  return { stats, cache, recent };
}

async function configureFake(knobs) {
  const res = await fetch(`${fake.url}/_fake/config`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(knobs),
  });
  assert.equal(res.status, 200, `/_fake/config ${JSON.stringify(knobs)}`);
}

const ask = (prompt) => call('POST', '/v1/monitor/chatgpt', { prompt, country: 'US' });

// ---- the page ---------------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, timeoutMs = 8000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last.ok) return last;
    if (Date.now() > deadline) assert.fail(`${what} within ${timeoutMs} ms: ${last.detail ?? JSON.stringify(last)}`);
    await sleep(100);
  }
}

function pageValues(page) {
  return page.evaluate((ids) => {
    const out = {};
    for (const id of ids) {
      const el = document.getElementById(id);
      out[id] = el === null ? '(no element)' : el.getAttribute('data-value');
    }
    return out;
  }, IDS);
}

function recentRows(page) {
  return page.$$eval('#recent-requests tr', (rows) =>
    rows.map((r) => ({ id: r.getAttribute('data-id'), upstream: r.getAttribute('data-upstream-id'), text: r.textContent })));
}

function diff(want, got) {
  return Object.keys(want)
    .filter((k) => want[k] !== got[k])
    .map((k) => `${k}: page ${JSON.stringify(got[k])}, endpoints ${JSON.stringify(want[k])}`)
    .join('; ');
}

// The page polls once a second: it matches the endpoints as soon as it has
// polled after the last change. Compared at one moment: the endpoints are read
// just before and just after the page's values, and must agree with both.
async function pageMatchesEndpoints(page, what) {
  return until(`${what}: the page shows what the endpoints answer`, async () => {
    const before = await snapshot();
    const got = await pageValues(page);
    const rows = await recentRows(page);
    const afterwards = await snapshot();
    const want = expectedValues(before.stats, before.cache, before.recent);
    const wantAfter = expectedValues(afterwards.stats, afterwards.cache, afterwards.recent);
    const d = diff(want, got);
    const ids = before.recent.requests.map((e) => e.id);
    const rowIds = rows.map((r) => r.id);
    const rowsOk = JSON.stringify(ids) === JSON.stringify(rowIds);
    const stable = diff(want, wantAfter) === '';
    return {
      ok: d === '' && rowsOk && stable,
      detail: d || (!rowsOk ? `recent rows ${JSON.stringify(rowIds)} vs ${JSON.stringify(ids)}` : 'endpoints changed while reading'),
      snap: before,
      values: got,
      rows,
    };
  });
}

async function openPage(path, base = proxy.url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  const requests = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    // A 404 of /_proxy/usage (not served by every proxy) is expected and handled.
    if (/status of 404/.test(m.text()) && /\/_proxy\/usage/.test(m.location().url ?? '')) return;
    problems.push(`console ${m.type()}: ${m.text()} (${m.location().url ?? ''})`);
  });
  page.on('request', (r) => requests.push(r));
  const response = await page.goto(base + path);
  return { context, page, problems, requests, response };
}

// ---- tests ----------------------------------------------------------------

before(async () => {
  workdir = mkdtempSync(join(tmpdir(), 'cloro-browser-'));
  fake = await start('fake', [env('FAKE_CLORO_BIN'), '--listen', '127.0.0.1:0', '--api-key', KEY, '--log-level', 'warn']);
  proxy = await start(
    'proxy',
    [env('CLORO_PROXY_BIN'), 'serve', '--listen', '127.0.0.1:0', '--upstream', fake.url,
     '--cache-dir', join(workdir, 'cache'), '--max-concurrency', '1'],
    { CLORO_API_KEY: KEY },
  );
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    // Playwright gives every launch a fresh, empty --user-data-dir.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  if (browser) await browser.close();
  const codes = {};
  for (const p of procs.reverse()) codes[p.name] = await stop(p);
  if (workdir) rmSync(workdir, { recursive: true, force: true });
  for (const p of procs) {
    if (/AddressSanitizer|LeakSanitizer|runtime error:/.test(p.log)) assert.fail(`${p.name} reported a sanitizer error:\n${p.log}`);
  }
  for (const name of ['proxy', 'proxy-members'])
    if (name in codes) assert.equal(codes[name], 0, `${name} exits 0 after SIGTERM:\n${procs.find((p) => p.name === name)?.log ?? ''}`);
});

test('GET and HEAD /_proxy/ serve the page with a strict policy', async () => {
  for (const path of ['/_proxy/', '/_proxy']) {
    const r = await call('GET', path);
    assert.equal(r.status, 200, path);
    assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.match(r.text, /^<!DOCTYPE html>/);
    const csp = r.headers.get('content-security-policy');
    assert.match(csp, /^default-src 'none'; /);
    assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/]+=*'/);
    assert.match(csp, /style-src 'sha256-[A-Za-z0-9+/]+=*'/);
    assert.match(csp, /connect-src 'self'/);
    assert.doesNotMatch(csp, /unsafe|\*/);
    assert.doesNotMatch(r.text, /\bsrc="|https?:\/\/(?!www\.w3\.org\/2000\/svg)/, 'no external asset');
  }
  const head = await call('HEAD', '/_proxy/');
  assert.equal(head.status, 200);
  assert.equal(head.text, '');
  assert.equal(head.headers.get('content-type'), 'text/html; charset=utf-8');
  assert.equal((await call('POST', '/_proxy/', {})).status, 405);
  // Admin traffic is not recorded: the page's own polls never fill the list.
  const recent = await json('/_proxy/recent');
  assert.equal(recent.requests_total, 0);
  assert.equal(recent.per_minute.length, 60);
});

test('the page shows what the endpoints answer, and follows new requests without a reload', async () => {
  // A miss, a hit, an upstream error (cloro's 400) and a proxy error (404).
  const miss = await ask('what does the status page say');
  assert.equal(miss.status, 200, miss.text);
  assert.equal(miss.headers.get('x-cache'), 'MISS');
  const hit = await ask('what does the status page say');
  assert.equal(hit.headers.get('x-cache'), 'HIT');
  const invalid = await call('POST', '/v1/monitor/chatgpt', { country: 'US' });
  assert.equal(invalid.status, 400, invalid.text);
  const missing = await call('GET', '/no/such/route');
  assert.equal(missing.status, 404);
  const missId = miss.headers.get('x-request-id');
  assert.ok(missId, 'the miss has an X-Request-ID');

  const { page, problems, requests, response, context } = await openPage('/_proxy/');
  assert.equal(response.status(), 200);
  await page.evaluate(() => { window.__notReloaded = true; });

  let m = await pageMatchesEndpoints(page, 'after a miss, a hit and two errors');
  assert.equal(m.values['requests-total'], '4');
  assert.equal(m.values['cache-hits'], '1');
  assert.equal(m.values['cache-misses'], '2'); // the invalid body was looked up too
  assert.ok(Math.abs(Number(m.values['hit-ratio']) - 1 / 3) < 1e-9, m.values['hit-ratio']);
  assert.ok(Number(m.values['credits-saved']) > 0, 'the hit saved credits');
  assert.equal(await page.textContent('#hit-ratio'), '33.3 %');
  assert.equal(await page.textContent('#requests-total'), '4');
  assert.equal(await page.textContent('#conn-status'), 'live');
  assert.equal(m.values['mode'], 'online');
  assert.equal(await page.textContent('#mode'), 'online');
  // Newest first, with both ids; the hit carries the paid call's X-Request-ID.
  assert.equal(m.rows.length, 4);
  assert.equal(m.rows[0].id, missing.headers.get('x-proxy-request-id'));
  assert.equal(m.rows[2].upstream, missId);
  assert.equal(m.rows[3].upstream, missId);
  assert.equal(m.rows[3].id, miss.headers.get('x-proxy-request-id'));
  assert.match(m.rows[3].text, /POST\/v1\/monitor\/chatgpt200MISS/);
  assert.match(m.rows[1].text, /400/);
  // The proxy's own 404: the X-Request-ID the client got is the proxy's id.
  assert.equal(missing.headers.get('x-request-id'), missing.headers.get('x-proxy-request-id'));
  assert.ok(m.rows[0].text.includes(missing.headers.get('x-request-id')), m.rows[0].text);
  // The chart holds the four requests, in the current minute.
  assert.equal(await page.getAttribute('#chart', 'data-total'), '4');
  assert.equal(await page.locator('#chart g[data-requests="4"]').count(), 1);
  // Without /_proxy/usage (404 here) the usage section degrades to a dash.
  const usage = await fetch(proxy.url + '/_proxy/usage');
  if (usage.status === 404) {
    assert.equal(await page.textContent('#usage-status'), '—');
    assert.equal(await page.getAttribute('#usage-status', 'data-state'), 'unavailable');
  } else {
    // With it, the table shows each member's totals as the endpoint gives them.
    assert.equal(usage.status, 200);
    await until('the usage table matches /_proxy/usage', async () => {
      const body = await (await fetch(proxy.url + '/_proxy/usage')).json();
      const want = {};
      for (const [name, m] of Object.entries(body.members ?? {}))
        for (const [k, v] of Object.entries(m.totals ?? {})) want[`${name}.${k}`] = String(v);
      const got = await page.$$eval('#usage-table tbody tr', (rows) => {
        const out = {};
        for (const r of rows)
          for (const td of r.querySelectorAll('td[data-key]'))
            out[`${r.getAttribute('data-member')}.${td.getAttribute('data-key')}`] = td.getAttribute('data-value');
        return out;
      });
      const state = await page.getAttribute('#usage-status', 'data-state');
      const d = diff(want, got);
      return { ok: state === 'available' && Object.keys(want).length > 0 && d === '', detail: `${state}; ${d}` };
    });
  }

  // Slow upstream, one slot: one call in flight, one queued, seen live.
  await configureFake({ latency_ms: 2500 });
  const slow = [ask('slow one'), ask('slow two')];
  m = await until('the page shows one call in flight and one queued', async () => {
    const v = await pageValues(page);
    return { ok: v['in-flight'] === '1' && v['queued'] === '1', detail: JSON.stringify(v) };
  });
  const s = await json('/_proxy/stats');
  assert.equal(s.limits.in_flight, 1);
  assert.equal(s.limits.queued, 1);
  const slowReplies = await Promise.all(slow);
  await configureFake({ latency_ms: 0 });
  for (const r of slowReplies) assert.equal(r.status, 200, r.text);

  // A fresh miss: its ids appear, the totals grow, no reload happened.
  const fresh = await ask('a brand new question');
  assert.equal(fresh.headers.get('x-cache'), 'MISS');
  const freshId = fresh.headers.get('x-request-id');
  assert.notEqual(freshId, missId);
  m = await pageMatchesEndpoints(page, 'after new requests');
  assert.equal(m.values['requests-total'], '7');
  assert.equal(m.values['in-flight'], '0');
  assert.equal(m.values['queued'], '0');
  assert.equal(m.rows[0].upstream, freshId);
  assert.equal(m.rows[0].id, fresh.headers.get('x-proxy-request-id'));
  assert.equal(await page.getAttribute('#chart', 'data-total'), '7');
  assert.equal(await page.evaluate(() => window.__notReloaded), true, 'the page was not reloaded');

  await page.screenshot({ path: join(process.env.BROWSER_OUT_DIR || workdir, 'status_page.png'), fullPage: true });
  // Only its own origin, no reload of the document, no console error.
  const origin = new URL(proxy.url).origin;
  for (const r of requests) assert.equal(new URL(r.url()).origin, origin, `request to ${r.url()}`);
  assert.equal(requests.filter((r) => r.resourceType() === 'document').length, 1);
  assert.deepEqual(problems, []);
  // The page's polls carry no Authorization when it was opened without a token.
  const polls = requests.filter((r) => r.resourceType() === 'fetch');
  assert.ok(polls.length >= 3);
  for (const r of polls) assert.equal((await r.allHeaders()).authorization, undefined);
  await context.close();
});

test('/_proxy/recent never shows a token, a query string or an Authorization header', async () => {
  const r = await call('GET', '/v1/countries?token=s3cr3t-in-query', undefined, {
    Authorization: 'Bearer sk_live_clientsecret',
    'X-Request-ID': 'client-label-1',
  });
  assert.ok(r.status < 500, r.text);
  const recent = await json('/_proxy/recent');
  const text = JSON.stringify(recent);
  assert.doesNotMatch(text, /s3cr3t|sk_live|Bearer|token/);
  assert.equal(recent.requests[0].path, '/v1/countries');
  assert.equal(recent.requests[0].client_request_id, 'client-label-1');
});

test('a ?token= on the page goes on its fetches as a bearer token', async () => {
  const { page, requests, problems, context } = await openPage('/_proxy/?token=adm%20in-token');
  await until('a first poll', async () => ({ ok: (await page.getAttribute('body', 'data-polls')) !== null }));
  const polls = requests.filter((r) => r.resourceType() === 'fetch');
  assert.ok(polls.length >= 3, `polls: ${polls.map((r) => r.url())}`);
  for (const r of polls) {
    assert.equal((await r.allHeaders()).authorization, 'Bearer adm in-token', r.url());
    assert.doesNotMatch(r.url(), /token/, 'the token never goes in a URL');
  }
  assert.deepEqual(problems, []);
  await context.close();
});

test('with members, the page needs the admin token and shows who asked', async () => {
  const ADMIN = 'adm1n-' + 'x'.repeat(20);
  const ALICE = 'cpm_alice-browser-test-token';
  const members = join(workdir, 'members.ini');
  writeFileSync(members, `[member alice]\ntoken_sha256 = ${createHash('sha256').update(ALICE).digest('hex')}\n`);
  const team = await start(
    'proxy-members',
    [env('CLORO_PROXY_BIN'), 'serve', '--listen', '127.0.0.1:0', '--upstream', fake.url,
     '--cache-dir', join(workdir, 'cache-members'), '--members-file', members],
    { CLORO_API_KEY: KEY, CLORO_ADMIN_TOKEN: ADMIN },
  );
  const asked = await call('POST', '/v1/monitor/chatgpt', { prompt: 'asked by alice', country: 'US' },
                           { Authorization: `Bearer ${ALICE}` }, team.url);
  assert.equal(asked.status, 200, asked.text);
  const upstreamId = asked.headers.get('x-request-id');

  // The page and its data need the admin token.
  assert.equal((await call('GET', '/_proxy/', undefined, {}, team.url)).status, 401);
  assert.equal((await call('GET', '/_proxy/?token=wrong', undefined, {}, team.url)).status, 403);
  assert.equal((await call('GET', '/_proxy/recent', undefined, {}, team.url)).status, 401);
  const admin = { Authorization: `Bearer ${ADMIN}` };
  const recent = await json('/_proxy/recent', admin, team.url);
  assert.equal(recent.requests.length, 1);
  assert.equal(recent.requests[0].member, 'alice');
  assert.doesNotMatch(JSON.stringify(recent), new RegExp(`${ALICE}|${ADMIN}|token`));

  const { page, problems, requests, response, context } = await openPage(`/_proxy/?token=${ADMIN}`, team.url);
  assert.equal(response.status(), 200);
  await until('the page is live with the admin token', async () => {
    const conn = await page.textContent('#conn-status');
    const total = await page.getAttribute('#requests-total', 'data-value');
    return { ok: conn === 'live' && total === '1', detail: `${conn}, requests-total ${total}` };
  });
  const rows = await recentRows(page);
  assert.equal(rows.length, 1);
  assert.equal(rows[0].upstream, upstreamId);
  assert.match(rows[0].text, /alice$/);
  // Usage per member: alice's row, as /_proxy/usage counts it.
  const usage = await json('/_proxy/usage', admin, team.url);
  const aliceRequests = String(usage.members.alice.totals.requests);
  await until("alice's usage row", async () => {
    const v = await page.getAttribute('#usage-table tr[data-member="alice"] td[data-key="requests"]', 'data-value').catch(() => null);
    return { ok: v === aliceRequests, detail: `requests ${v}, want ${aliceRequests}` };
  });
  for (const r of requests.filter((x) => x.resourceType() === 'fetch'))
    assert.equal((await r.allHeaders()).authorization, `Bearer ${ADMIN}`, r.url());
  assert.deepEqual(problems, []);
  await context.close();
  // Opened without the token, the proxy refuses the page itself.
  const refused = await openPage('/_proxy/', team.url);
  assert.equal(refused.response.status(), 401);
  await refused.context.close();
});
