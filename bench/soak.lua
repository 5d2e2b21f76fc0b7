-- soak.lua: one stream of bench/soak.sh's mixed workload, for one interval.
-- Arguments (after wrk's "--"): MODE TAG HIST PACE_MS [KEYS]
--   MODE     which stream this wrk process is (below)
--   TAG      makes the prompts of this run and interval distinct
--   HIST     file done() writes the latency histogram to ("µs count" lines,
--            µs rounded down to 3 significant digits), so that soak.sh can
--            merge every stream's into one p99 (within 1 %)
--   PACE_MS  pause before each request of a connection (0: none)
--   KEYS     hit: how many prompts soak.sh has cached ("soak hit 1".."soak hit KEYS")
--
-- Streams, all POST /v1/monitor/chatgpt unless said otherwise:
--   hit       the KEYS cached prompts in turn: every answer must be a 200
--   miss      a new prompt each time (a MISS, stored; the store evicts)
--   coalesce  every connection sends one request per 200 ms window, all with
--             the window's prompt, at the window's start: one MISS upstream,
--             the others COALESCED onto it (or HITs once it is stored)
--   async     POST /v1/async/task (a new prompt, one
--             in 5 a cached one, one in 25 failing upstream: [task-fail]),
--             then GET /v1/async/task/{id} every 250 ms until it ends
--   artifact  a new prompt with include.html, then
--             GET of the /_proxy/artifacts/... page its answer links to
--   fault     a new prompt with one of the fake's fault markers each time
--             (500, reset, reset mid-body, slow body, 429, 503)
--
-- One connection a thread (wrk -tN -cN): a thread's requests go one after the
-- other, so request() and response() time each one (wrk's own histogram
-- cannot be read out in done() in reasonable time: each value costs a scan)
-- and the async and artifact streams know what the answer is to.
--
-- Statuses: 200 is an answer; 429, 500, 502, 503 and 504 are faults (what
-- injected upstream faults become); anything else, a non-200 on the hit
-- stream, a 200 create without a task id or a 200 artifact answer without a
-- local page link is unexpected. done() prints one line soak.sh parses:
--   BENCH mode=M requests=N ok=N f429=N f500=N f502=N f503=N f504=N
--         unexpected=N first_unexpected=S hit=N miss=N coalesced=N stale=N
--         created=N tasks_done=N pages=N connect=N read=N write=N status=N
--         timeout=N p99_us=N

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "wrk_common.lua")

local function now_ms()
   return monotonic_us() / 1000
end

local WINDOW_MS = 200 -- coalesce: one prompt a window
local POLL_MS = 250   -- async: time between two polls of a task
local MAX_OPEN = 50   -- async: open tasks a thread follows before it creates more
local FAULTS = { "[fake:500]", "[fake:reset]", "[fake:reset-mid-body]", "[fake:slow]",
   "[fake:429]", "[fake:503]" }
local COUNTERS = { "requests", "ok", "f429", "f500", "f502", "f503", "f504", "unexpected", "hit",
   "miss", "coalesced", "stale", "created", "tasks_done", "pages" }

function init(args)
   mode = args[1]
   tag = args[2]
   hist_path = args[3]
   pace = tonumber(args[4]) or 0
   keys = tonumber(args[5]) or 1
   for _, k in ipairs(COUNTERS) do
      _G[k] = 0
   end
   first_unexpected = ""
   hist = {}    -- µs, 3 significant digits -> count
   sent_at = 0
   n = 0        -- requests built by this thread
   last = ""    -- what the last request was (async, artifact)
   open = {}    -- async: {id, due} of the tasks this thread follows
   page = nil   -- artifact: the page to fetch next
end

local function chatgpt(prompt, extra)
   return wrk.format("POST", "/v1/monitor/chatgpt", nil,
      string.format('{"prompt":"%s","country":"US"%s}', prompt, extra or ""))
end

-- async: the first open task due for a poll, taken off the list.
local function due_task()
   local t = now_ms()
   for i, task in ipairs(open) do
      if task.due <= t then
         table.remove(open, i)
         return task
      end
   end
   return nil
end

-- µs rounded down to 3 significant digits.
local function bucket(us)
   local scale = 1
   while us >= 1000 do
      us = us / 10
      scale = scale * 10
   end
   return math.floor(us) * scale
end

local function build()
   n = n + 1
   local uniq = string.format("%s-t%d-%d", tag, id, n)
   if mode == "hit" then
      return chatgpt(string.format("soak hit %d", (id * 7 + n) % keys + 1))
   elseif mode == "miss" then
      return chatgpt("soak miss " .. uniq)
   elseif mode == "coalesce" then
      return chatgpt(string.format("soak coalesce %s-w%d", tag, math.floor(now_ms() / WINDOW_MS)))
   elseif mode == "fault" then
      return chatgpt(string.format("soak fault %s %s", uniq, FAULTS[n % #FAULTS + 1]))
   elseif mode == "artifact" then
      if page ~= nil then
         local path = page
         last, page = "page", nil
         return wrk.format("GET", path)
      end
      last = "answer"
      return chatgpt("soak artifact " .. uniq, ',"include":{"html":true}')
   elseif mode == "async" then
      local task = due_task()
      if task ~= nil or #open >= MAX_OPEN then
         task = task or table.remove(open, 1)
         last, polled = "poll", task
         return wrk.format("GET", "/v1/async/task/" .. task.id)
      end
      last = "create"
      local prompt = "soak async " .. uniq
      if n % 5 == 0 then
         prompt = string.format("soak hit %d", n % keys + 1)
      elseif n % 25 == 1 then
         prompt = prompt .. " [task-fail]"
      end
      return wrk.format("POST", "/v1/async/task", nil, string.format(
         '{"taskType":"CHATGPT","payload":{"prompt":"%s","country":"US"}}', prompt))
   end
   error("soak.lua: unknown mode " .. tostring(mode))
end

function request()
   local r = build()
   sent_at = now_ms()
   return r
end

function delay()
   if mode == "coalesce" then
      -- The next window's start, give or take a millisecond.
      local t = now_ms()
      return math.floor(WINDOW_MS - t % WINDOW_MS) + math.random(0, 1)
   end
   return pace
end

local function unexpected_answer(why)
   unexpected = unexpected + 1
   if first_unexpected == "" then
      first_unexpected = string.gsub(mode .. ":" .. why, "[%s]", "_")
   end
end

function response(status, headers, body)
   local b = bucket((now_ms() - sent_at) * 1000)
   hist[b] = (hist[b] or 0) + 1
   requests = requests + 1
   local x = headers["X-Cache"] or headers["x-cache"]
   if x == "HIT" then
      hit = hit + 1
   elseif x == "MISS" then
      miss = miss + 1
   elseif x == "COALESCED" then
      coalesced = coalesced + 1
   elseif x == "STALE" then
      stale = stale + 1
   end
   if status ~= 200 then
      local f = "f" .. status
      if mode ~= "hit" and _G[f] ~= nil and f ~= "f200" then
         _G[f] = _G[f] + 1
      else
         unexpected_answer(tostring(status))
      end
      if mode == "async" and last == "poll" then
         table.insert(open, { id = polled.id, due = now_ms() + POLL_MS })
      end
      return
   end
   ok = ok + 1
   if mode == "artifact" then
      if last == "answer" then
         page = string.match(body, '"html":"https?://[^/"]*(/_proxy/artifacts/[^"]+)"')
         if page == nil then
            unexpected_answer("no_artifact_link")
         end
      else
         pages = pages + 1
      end
   elseif mode == "async" then
      local state = string.match(body, '"status":"(%u+)"')
      if last == "create" then
         local task_id = string.match(body, '"id":"([^"]+)"')
         if task_id == nil then
            unexpected_answer("no_task_id")
            return
         end
         created = created + 1
         if state == "COMPLETED" or state == "FAILED" then
            tasks_done = tasks_done + 1
         else
            table.insert(open, { id = task_id, due = now_ms() + POLL_MS })
         end
      elseif state == "COMPLETED" or state == "FAILED" then
         tasks_done = tasks_done + 1
      else
         table.insert(open, { id = polled.id, due = now_ms() + POLL_MS })
      end
   end
end

function done(summary, latency, requests_)
   local sum = {}
   for _, k in ipairs(COUNTERS) do
      sum[k] = 0
   end
   local first, path, merged, total = "", nil, {}, 0
   for _, t in ipairs(threads) do
      for _, k in ipairs(COUNTERS) do
         sum[k] = sum[k] + t:get(k)
      end
      local f = t:get("first_unexpected")
      if first == "" and f ~= nil then
         first = f
      end
      path = path or t:get("hist_path")
      for us, c in pairs(t:get("hist")) do
         merged[us] = (merged[us] or 0) + c
         total = total + c
      end
   end
   local values = {}
   for us in pairs(merged) do
      table.insert(values, us)
   end
   table.sort(values)
   local p99, seen = 0, 0
   for _, us in ipairs(values) do
      seen = seen + merged[us]
      if seen >= total * 0.99 then
         p99 = us
         break
      end
   end
   if path ~= nil then
      local f = assert(io.open(path, "w"))
      for _, us in ipairs(values) do
         f:write(string.format("%d %d\n", us, merged[us]))
      end
      f:close()
   end
   local e = summary.errors
   local out = { "BENCH mode=" .. (threads[1] and threads[1]:get("mode") or "?") }
   for _, k in ipairs(COUNTERS) do
      table.insert(out, string.format("%s=%d", k, sum[k]))
      if k == "unexpected" then
         table.insert(out, "first_unexpected=" .. (first == "" and "-" or first))
      end
   end
   table.insert(out, string.format("connect=%d read=%d write=%d status=%d timeout=%d p99_us=%d",
      e.connect, e.read, e.write, e.status, e.timeout, p99))
   io.write(table.concat(out, " ") .. "\n")
end
