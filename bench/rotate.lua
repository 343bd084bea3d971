-- wrk script: rotates through the requests listed in $WRK_REQUESTS, one per line:
--   METHOD <tab> PATH <tab> BEARER TOKEN (may be empty)
-- POSTs send $WRK_BODY as JSON. Counts X-Cache: HIT answers; with $WRK_LIMIT each thread stops
-- after that many responses.
local threads = {}
local next_offset = 0

function setup(thread)
   thread:set("offset", next_offset)
   next_offset = next_offset + 7919
   table.insert(threads, thread)
end

function init(args)
   requests, hits, responses = {}, 0, 0
   limit = tonumber(os.getenv("WRK_LIMIT") or "0")
   local body = os.getenv("WRK_BODY")
   for line in io.lines(os.getenv("WRK_REQUESTS")) do
      local method, path, token = line:match("^(%S+)\t(%S+)\t?(%S*)$")
      local headers = {}
      if token ~= "" then headers["Authorization"] = "Bearer " .. token end
      if method == "POST" then headers["Content-Type"] = "application/json" end
      table.insert(requests, wrk.format(method, path, headers, method == "POST" and body or nil))
   end
   counter = offset % #requests
end

function request()
   counter = counter % #requests + 1
   return requests[counter]
end

function response(status, headers, body)
   responses = responses + 1
   if headers["X-Cache"] == "HIT" then hits = hits + 1 end
   if limit > 0 and responses >= limit then wrk.thread:stop() end
end

function done(summary, latency, requests)
   local total_hits, total = 0, 0
   for _, thread in ipairs(threads) do
      total_hits = total_hits + thread:get("hits")
      total = total + thread:get("responses")
   end
   io.write(string.format("CACHE_HITS %d %d\n", total_hits, total))
end
