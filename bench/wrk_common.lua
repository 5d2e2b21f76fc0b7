-- wrk_common.lua: what the wrk scripts of bench/ share. A script loads it
-- first, from its own directory:
--   dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "wrk_common.lua")
-- It sets the request defaults (POST /v1/monitor/chatgpt, JSON, the bench
-- key: a script may change the path and the body), the global list threads
-- with each thread's number as its global id (1, 2, ...), and the clocks of
-- LuaJIT's FFI: realtime_s() (CLOCK_REALTIME in s, the clock of bash's
-- EPOCHREALTIME) and monotonic_us() (CLOCK_MONOTONIC in µs).

local ffi = require("ffi")
ffi.cdef [[
struct bench_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clock_id, struct bench_timespec *tp);
]]
local ts = ffi.new("struct bench_timespec")

function realtime_s()
   ffi.C.clock_gettime(0, ts)
   return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

function monotonic_us()
   ffi.C.clock_gettime(1, ts)
   return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

wrk.method = "POST"
wrk.path = "/v1/monitor/chatgpt"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk_live_bench"

threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads)
end
