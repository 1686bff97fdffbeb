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
   -- Plain searches only: the driver shares the two cores with the gateway and PostgreSQL, and pattern matching over
   -- ~800 KB a page (or gsub, which builds a copy) cost it most of a core, taken from the side being measured.
   local at = 1
   while true do
      local s, e = string.find(body, '"kind":"cv"', at, true)
      if not s then break end
      docs = docs + 1
      at = e + 1
   end
   -- The cursors close the page, after the items: look there only.
   local tail = math.max(1, #body - 1024)
   local s, e = string.find(body, '"nextCursor":"', tail, true)
   cursor = s and string.sub(body, e + 1, string.find(body, '"', e + 1, true) - 1) or nil
end
