-- post_artifacts.lua: the requests of bench/artifacts.sh, each one distinct.
-- POST /v1/monitor/chatgpt with {"prompt":"bench artifact T-N","country":"US",
-- "include":{"html":true}}, T the thread's number and N a counter of the
-- thread: every request is a new cache key, so each one goes upstream and
-- its answer, stored, carries an HTML artifact URL to capture.
--
-- Arguments (after wrk's "--"): TOTAL THREADS DONE_DIR. The TOTAL requests are
-- shared out among the THREADS threads (the -t given to wrk); each thread
-- sends its share and no more: delay() is called once before each request,
-- and once the share is given out it holds the connection back for an hour.
-- When a thread has all its answers it creates DONE_DIR/done-T; the script
-- ends wrk (SIGINT) once every thread has (wrk itself always runs for -d).
--
-- Every response whose status is not 200 is counted, and so is every one
-- whose Cache-Status does not say the answer was stored. Times come from
-- CLOCK_REALTIME (LuaJIT's FFI), the clock of bash's EPOCHREALTIME. done()
-- sums the threads and prints one machine-readable line that artifacts.sh
-- parses:
--   BENCH requests=N answers=N sent=N non200=N first_bad=S notstored=N
--         first_notstored=S connect=N read=N write=N status=N timeout=N
--         first_send=F last_answer=F
-- (first_send: when the first request was given out, last_answer: when the
-- last answer arrived, both in seconds since the epoch).

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "wrk_common.lua")
local now = realtime_s

function init(args)
   local total = tonumber(args[1]) or 1000
   local nthreads = tonumber(args[2]) or 1
   done_dir = args[3]
   -- id is set by setup() before init() runs; spread the remainder.
   share = math.floor(total / nthreads)
   if id <= total % nthreads then
      share = share + 1
   end
   given = 0       -- requests given out by delay()
   sent = 0        -- bodies built by request() (wrk builds one more to check it)
   answers = 0
   non200 = 0
   first_bad = ""
   notstored = 0
   first_notstored = ""
   first_send = 0
   last_answer = 0
end

function delay()
   if given < share then
      given = given + 1
      if first_send == 0 then
         first_send = now()
      end
      return 0
   end
   return 3600000 -- this thread's share is out: keep the connection idle
end

function request()
   sent = sent + 1
   local body = string.format(
      '{"prompt":"bench artifact %d-%d","country":"US","include":{"html":true}}', id, sent)
   return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
   answers = answers + 1
   last_answer = now()
   if status ~= 200 then
      non200 = non200 + 1
      if first_bad == "" then
         first_bad = tostring(status)
      end
   end
   local c = headers["Cache-Status"] or headers["cache-status"] or ""
   if not string.find(c, "stored", 1, true) then
      notstored = notstored + 1
      if first_notstored == "" then
         first_notstored = string.gsub(c ~= "" and c or "none", "[%s]", "_")
      end
   end
   if answers == share and done_dir ~= nil then
      local f = io.open(done_dir .. "/done-" .. id, "w")
      if f ~= nil then
         f:close()
      end
   end
end

function done(summary, latency, requests)
   local n, s, bad, ns = 0, 0, 0, 0
   local first, first_ns = "", ""
   local t0, t1 = 0, 0
   for _, t in ipairs(threads) do
      n = n + t:get("answers")
      s = s + t:get("given")
      bad = bad + t:get("non200")
      ns = ns + t:get("notstored")
      local f = t:get("first_bad")
      if first == "" and f ~= nil then
         first = f
      end
      f = t:get("first_notstored")
      if first_ns == "" and f ~= nil then
         first_ns = f
      end
      local a, b = t:get("first_send"), t:get("last_answer")
      if a > 0 and (t0 == 0 or a < t0) then
         t0 = a
      end
      if b > t1 then
         t1 = b
      end
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d answers=%d sent=%d non200=%d first_bad=%s notstored=%d " ..
      "first_notstored=%s connect=%d read=%d write=%d status=%d timeout=%d " ..
      "first_send=%.6f last_answer=%.6f\n",
      summary.requests, n, s, bad, first == "" and "-" or first, ns,
      first_ns == "" and "-" or first_ns, e.connect, e.read, e.write, e.status, e.timeout,
      t0, t1))
end
