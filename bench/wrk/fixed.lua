-- One fixed path (BENCH_PATH), with the token when BENCH_TOKEN is set: trivial endpoints, first and deep feed pages.
package.path = package.path .. ";" .. (os.getenv("BENCH_WRK_DIR") or ".") .. "/?.lua"
require "common"

function init(args)
   docs, pages = 0, 0
   path = os.getenv("BENCH_PATH")
end

function request()
   return wrk.format("GET", path, headers())
end
