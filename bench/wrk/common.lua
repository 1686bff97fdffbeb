-- Shared by the benchmark's wrk scripts: the bearer token (BENCH_TOKEN, none when empty), per-thread counters read back
-- in done(), and one machine-readable RESULT line that scripts/bench parses.
local threads = {}
token = os.getenv("BENCH_TOKEN") or ""

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

function headers()
   if token ~= "" then
      return { ["Authorization"] = "Bearer " .. token, ["Accept"] = "application/json" }
   end
   return { ["Accept"] = "application/json" }
end

function read_lines(path)
   local lines = {}
   local f = assert(io.open(path, "r"))
   for line in f:lines() do
      if line ~= "" then lines[#lines + 1] = line end
   end
   f:close()
   return lines
end

function sum(name)
   local total = 0
   for _, t in ipairs(threads) do total = total + (t:get(name) or 0) end
   return total
end

function done(summary, latency, requests)
   local seconds = summary.duration / 1e6
   local docs = sum("docs")
   local pages = sum("pages")
   io.write(string.format(
      "RESULT requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f mean_ms=%.3f non2xx=%d socket_errors=%d docs=%d docs_per_s=%.1f pages_per_s=%.1f\n",
      summary.requests, seconds, summary.requests / seconds,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.mean / 1000,
      summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
      docs, docs / seconds, pages / seconds))
end
