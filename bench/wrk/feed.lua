-- The feed: each connection (one per thread) walks the site's feed from a random starting cursor, following nextCursor
-- page after page, and starts again elsewhere at the end; documents are counted from the responses.
package.path = package.path .. ";" .. (os.getenv("BENCH_WRK_DIR") or ".") .. "/?.lua"
require "common"

function init(args)
   cursors = read_lines(os.getenv("BENCH_CURSORS"))
   math.randomseed(id * 7919 + os.time())
   docs, pages, cursor = 0, 0, nil
   limit = os.getenv("BENCH_LIMIT") or "100"
end

function request()
   local c = cursor or cursors[math.random(#cursors)]
   return wrk.format("GET", "/api/v1/shared-cvs?limit=" .. limit .. "&cursor=" .. c, headers())
end

function response(status, hdrs, body)
   if status ~= 200 then
      cursor = nil
      return
   end
   pages = pages + 1
   local _, n = string.gsub(body, '"kind":"cv"', "")
   docs = docs + n
   cursor = string.match(body, '"nextCursor":"([^"]+)"')
end
