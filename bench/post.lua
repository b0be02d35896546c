-- wrk script: one request per call, as the environment says. BENCH_METHOD is the method
-- (default POST); BENCH_BODY the form body, if any; BENCH_AUTH the Authorization header
-- value (may be empty); BENCH_AUTH_FILE, instead, a file of Authorization values, one a
-- line, that successive requests take in turn (many clients).
wrk.method = os.getenv("BENCH_METHOD") or "POST"
local body = os.getenv("BENCH_BODY")
if body ~= nil and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end
local auth = os.getenv("BENCH_AUTH")
if auth ~= nil and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

local auth_file = os.getenv("BENCH_AUTH_FILE")
if auth_file ~= nil and auth_file ~= "" then
  local auths = {}
  for line in io.lines(auth_file) do
    auths[#auths + 1] = line
  end
  local turn = 0
  request = function()
    turn = turn % #auths + 1
    wrk.headers["Authorization"] = auths[turn]
    return wrk.format()
  end
end

-- One machine-readable line; latencies in microseconds.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d socket_errors=%d non2xx=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
