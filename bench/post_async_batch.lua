-- post_async_batch.lua: the one request of bench/async_batch.sh.
-- POST /v1/async/task/batch with the body read from the file named by the
-- environment variable BATCH_BODY (a JSON array of BATCH_TASKS tasks whose
-- prompts are all in the proxy's cache), the bench key. The body is read once
-- when the script loads.
--
-- Answers are sorted into:
--   ok     a 200 answered wholly from the cache: X-Proxy-Batch starts with
--          "cached=BATCH_TASKS;" and the body has "succeeded":BATCH_TASKS;
--   busy   a 503 whose body says SERVICE_UNAVAILABLE: the proxy refusing the
--          batch while its store writer is behind (with Retry-After), by
--          design; counted, not an error;
--   non200 any other status; notcached: a 200 not answered wholly from the
--          cache. Both are errors for the bench.
-- The latency of every ok answer is measured here (CLOCK_MONOTONIC through
-- LuaJIT's FFI, from request(), which wrk calls just before writing a
-- request on a free connection, to response()): wrk's own histogram mixes
-- the quick 503s in. Exact with one connection per wrk thread (-tN -cN), as
-- async_batch.sh runs it.
-- done() sums the threads and prints one machine-readable line that
-- async_batch.sh parses (the BENCH line of post_cache_hit.lua, with
-- notcached= instead of nonhit=, busy=, ok=, and the ok answers' latency):
--   BENCH requests=N duration_us=N non200=N first_bad=S notcached=N
--         first_notcached=S busy=N ok=N connect=N read=N write=N status=N
--         timeout=N rps=F ok_rps=F p50_us=F p90_us=F p99_us=F
--         ok_p50_us=F ok_p90_us=F ok_p99_us=F
-- (status: wrk's count of answers with a status above 399, less the busy
-- 503s; p50_us..p99_us: wrk's histogram of every answer, the one --latency
-- prints; ok_*: the ok answers', 0 when there were none. The ok figures
-- start before wrk's clock and end after it, as wrk hands the 130 KB answer
-- to Lua: they read up to ~1 ms above wrk's for the same answers).

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "wrk_common.lua")
local now_us = monotonic_us

local path = os.getenv("BATCH_BODY")
local tasks = os.getenv("BATCH_TASKS") or "500"
if path == nil or path == "" then
   error("post_async_batch.lua: BATCH_BODY (the batch body file) is not set")
end
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()

wrk.path = "/v1/async/task/batch"
wrk.body = body

local want_header = "cached=" .. tasks .. ";"
local want_body = '"succeeded":' .. tasks .. ","

function init(args)
   non200 = 0
   first_bad = ""
   notcached = 0
   first_notcached = ""
   busy = 0
   ok = 0
   ok_lat = {} -- µs of every ok answer
   sent_at = 0
   req = wrk.format() -- the same request every time, built once
end

function request()
   sent_at = now_us()
   return req
end

function response(status, headers, body)
   local took = now_us() - sent_at
   if status == 503 and string.find(body, "SERVICE_UNAVAILABLE", 1, true) then
      busy = busy + 1
      return
   end
   if status ~= 200 then
      non200 = non200 + 1
      if first_bad == "" then
         first_bad = tostring(status)
      end
      return
   end
   local split = headers["X-Proxy-Batch"] or headers["x-proxy-batch"] or ""
   -- The summary comes first in the body: the search stops early.
   if string.sub(split, 1, #want_header) ~= want_header or
      not string.find(body, want_body, 1, true) then
      notcached = notcached + 1
      if first_notcached == "" then
         first_notcached = string.gsub(split ~= "" and split or "none", "[%s]", "")
      end
      return
   end
   ok = ok + 1
   ok_lat[ok] = took
end

-- percentile(sorted, p): the nearest-rank percentile, 0 when empty.
local function percentile(v, p)
   if #v == 0 then
      return 0
   end
   local i = math.ceil(#v * p / 100)
   if i < 1 then
      i = 1
   end
   return v[i]
end

function done(summary, latency, requests)
   local bad, nc, b, n = 0, 0, 0, 0
   local first, first_nc = "", ""
   local all = {}
   for _, t in ipairs(threads) do
      bad = bad + t:get("non200")
      nc = nc + t:get("notcached")
      b = b + t:get("busy")
      n = n + t:get("ok")
      local v = t:get("first_bad")
      if first == "" and v ~= nil then
         first = v
      end
      v = t:get("first_notcached")
      if first_nc == "" and v ~= nil then
         first_nc = v
      end
      for _, us in ipairs(t:get("ok_lat")) do
         all[#all + 1] = us
      end
   end
   table.sort(all)
   local e = summary.errors
   local secs = summary.duration / 1e6
   local rps, ok_rps = 0, 0
   if secs > 0 then
      rps = summary.requests / secs
      ok_rps = n / secs
   end
   io.write(string.format(
      "BENCH requests=%d duration_us=%d non200=%d first_bad=%s notcached=%d " ..
      "first_notcached=%s busy=%d ok=%d connect=%d read=%d write=%d status=%d timeout=%d " ..
      "rps=%.1f ok_rps=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f " ..
      "ok_p50_us=%.1f ok_p90_us=%.1f ok_p99_us=%.1f\n",
      summary.requests, summary.duration, bad, first == "" and "-" or first,
      nc, first_nc == "" and "-" or first_nc, b, n,
      e.connect, e.read, e.write, e.status - b, e.timeout, rps, ok_rps,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      percentile(all, 50), percentile(all, 90), percentile(all, 99)))
end
