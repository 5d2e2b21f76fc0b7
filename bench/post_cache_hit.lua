-- post_cache_hit.lua: the one request every target gets in bench/cache_hit.sh.
-- The same request as post_chatgpt.lua (POST /v1/monitor/chatgpt, the same
-- small JSON body and bench key), so after one warm-up request it is a cache
-- hit for cloro-proxy and for nginx (whose cache key includes the body).
--
-- Every response whose status is not 200 is counted per thread, and so is
-- every response that does not say it was a cache hit: cloro-proxy's
-- "X-Cache: HIT", nginx's "X-Cache-Status: HIT" (add_header in
-- nginx-cache.conf.in). done() sums them and prints one machine-readable line
-- that cache_hit.sh parses (the BENCH line of post_chatgpt.lua plus nonhit=):
--   BENCH requests=N duration_us=N non200=N first_bad=S nonhit=N first_nonhit=S
--         connect=N read=N write=N status=N timeout=N rps=F p50_us=F p90_us=F
--         p99_us=F
-- (latency percentiles are wrk's own histogram, the one --latency prints).

wrk.method = "POST"
wrk.path = "/v1/monitor/chatgpt"
wrk.body = '{"prompt":"bench prompt","country":"US"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk_live_bench"

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   non200 = 0
   first_bad = ""
   nonhit = 0
   first_nonhit = ""
end

function response(status, headers, body)
   if status ~= 200 then
      non200 = non200 + 1
      if first_bad == "" then
         first_bad = tostring(status)
      end
   end
   local c = headers["X-Cache"] or headers["X-Cache-Status"] or headers["x-cache"] or
      headers["x-cache-status"]
   if c ~= "HIT" then
      nonhit = nonhit + 1
      if first_nonhit == "" then
         first_nonhit = c or "none"
      end
   end
end

function done(summary, latency, requests)
   local bad, nh = 0, 0
   local first, first_nh = "", ""
   for _, t in ipairs(threads) do
      bad = bad + t:get("non200")
      nh = nh + t:get("nonhit")
      local f = t:get("first_bad")
      if first == "" and f ~= nil then
         first = f
      end
      f = t:get("first_nonhit")
      if first_nh == "" and f ~= nil then
         first_nh = f
      end
   end
   local e = summary.errors
   local secs = summary.duration / 1e6
   local rps = 0
   if secs > 0 then
      rps = summary.requests / secs
   end
   io.write(string.format(
      "BENCH requests=%d duration_us=%d non200=%d first_bad=%s nonhit=%d first_nonhit=%s " ..
      "connect=%d read=%d write=%d status=%d timeout=%d rps=%.1f p50_us=%.1f p90_us=%.1f " ..
      "p99_us=%.1f\n",
      summary.requests, summary.duration, bad, first == "" and "-" or first,
      nh, first_nh == "" and "-" or first_nh,
      e.connect, e.read, e.write, e.status, e.timeout, rps,
      latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
