-- post_async_batch.lua: the one request of bench/async_batch.sh.
-- POST /v1/async/task/batch with the body read from the file named by the
-- environment variable BATCH_BODY (a JSON array of BATCH_TASKS tasks whose
-- prompts are all in the proxy's cache), the bench key. The body is read once
-- when the script loads, so wrk sends a prebuilt request.
--
-- Every response whose status is not 200 is counted per thread, and so is
-- every one not answered wholly from the cache: its X-Proxy-Batch header
-- does not start with "cached=BATCH_TASKS;", or its body lacks
-- "succeeded":BATCH_TASKS. done() sums them and prints one machine-readable
-- line that async_batch.sh parses (the BENCH line of post_cache_hit.lua with
-- notcached= instead of nonhit=):
--   BENCH requests=N duration_us=N non200=N first_bad=S notcached=N
--         first_notcached=S connect=N read=N write=N status=N timeout=N
--         rps=F p50_us=F p90_us=F p99_us=F
-- (latency percentiles are wrk's own histogram, the one --latency prints).

local path = os.getenv("BATCH_BODY")
local tasks = os.getenv("BATCH_TASKS") or "500"
if path == nil or path == "" then
   error("post_async_batch.lua: BATCH_BODY (the batch body file) is not set")
end
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.path = "/v1/async/task/batch"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk_live_bench"

local want_header = "cached=" .. tasks .. ";"
local want_body = '"succeeded":' .. tasks .. ","

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   non200 = 0
   first_bad = ""
   notcached = 0
   first_notcached = ""
end

function response(status, headers, body)
   if status ~= 200 then
      non200 = non200 + 1
      if first_bad == "" then
         first_bad = tostring(status)
      end
   end
   local split = headers["X-Proxy-Batch"] or headers["x-proxy-batch"] or ""
   -- The summary comes first in the body: the search stops early.
   if string.sub(split, 1, #want_header) ~= want_header or
      not string.find(body, want_body, 1, true) then
      notcached = notcached + 1
      if first_notcached == "" then
         first_notcached = string.gsub(split ~= "" and split or "none", "[%s]", "")
      end
   end
end

function done(summary, latency, requests)
   local bad, nc = 0, 0
   local first, first_nc = "", ""
   for _, t in ipairs(threads) do
      bad = bad + t:get("non200")
      nc = nc + t:get("notcached")
      local v = t:get("first_bad")
      if first == "" and v ~= nil then
         first = v
      end
      v = t:get("first_notcached")
      if first_nc == "" and v ~= nil then
         first_nc = v
      end
   end
   local e = summary.errors
   local secs = summary.duration / 1e6
   local rps = 0
   if secs > 0 then
      rps = summary.requests / secs
   end
   io.write(string.format(
      "BENCH requests=%d duration_us=%d non200=%d first_bad=%s notcached=%d " ..
      "first_notcached=%s connect=%d read=%d write=%d status=%d timeout=%d rps=%.1f " ..
      "p50_us=%.1f p90_us=%.1f p99_us=%.1f\n",
      summary.requests, summary.duration, bad, first == "" and "-" or first,
      nc, first_nc == "" and "-" or first_nc,
      e.connect, e.read, e.write, e.status, e.timeout, rps,
      latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
