-- post_chatgpt.lua: the one request every target gets in bench/passthrough.sh.
-- POST /v1/monitor/chatgpt with a small JSON body and the bench key. Through
-- cloro-proxy the key is replaced by the proxy's own, through nginx by
-- proxy_set_header; the fake upstream accepts only sk_live_bench either way.
--
-- Every response whose status is not 200 is counted per thread; done() sums
-- them and prints one machine-readable line that passthrough.sh parses:
--   BENCH requests=N duration_us=N non200=N connect=N read=N write=N status=N
--         timeout=N rps=F p50_us=F p90_us=F p99_us=F
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
end

function response(status, headers, body)
   if status ~= 200 then
      non200 = non200 + 1
      if first_bad == "" then
         first_bad = tostring(status)
      end
   end
end

function done(summary, latency, requests)
   local bad = 0
   local first = ""
   for _, t in ipairs(threads) do
      bad = bad + t:get("non200")
      local f = t:get("first_bad")
      if first == "" and f ~= nil then
         first = f
      end
   end
   local e = summary.errors
   local secs = summary.duration / 1e6
   local rps = 0
   if secs > 0 then
      rps = summary.requests / secs
   end
   io.write(string.format(
      "BENCH requests=%d duration_us=%d non200=%d first_bad=%s connect=%d read=%d write=%d " ..
      "status=%d timeout=%d rps=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f\n",
      summary.requests, summary.duration, bad, first == "" and "-" or first,
      e.connect, e.read, e.write, e.status, e.timeout, rps,
      latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
