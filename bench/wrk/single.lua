-- One CV at a time: a random id of the site's (BENCH_IDS, one per line) per request.
package.path = package.path .. ";" .. (os.getenv("BENCH_WRK_DIR") or ".") .. "/?.lua"
require "common"

function init(args)
   ids = read_lines(os.getenv("BENCH_IDS"))
   math.randomseed(id * 104729 + os.time())
   docs, pages = 0, 0
end

function request()
   return wrk.format("GET", "/api/v1/shared-cvs/" .. ids[math.random(#ids)], headers())
end

function response(status, hdrs, body)
   if status == 200 then docs = docs + 1 end
end
