-- rotate.lua -- the rotating variant of `make bench` (bench/run.sh): every request carries
-- the next of many users' access tokens, so that the gateway's per-thread "last verified
-- token" never matches (every request pays the JWT signature check) and auth looks up a
-- different user each time.
--
-- usage: wrk ... -s bench/rotate.lua URL -- TOKEN_FILE THREADS
--   TOKEN_FILE: one access token a line (bench/users.py); THREADS: wrk's -t.
-- Each wrk thread goes round-robin over all the tokens from its own offset (thread k of n
-- starts at k/n of the list), so two threads do not send the same token at the same time;
-- within a thread consecutive requests (on its different connections) carry different
-- tokens. The requests are formatted once, in init: request() only picks the next one.

local counter = 0

-- main state, once per thread before it starts: the thread's number
function setup(thread)
  thread:set("thread_no", counter)
  counter = counter + 1
end

local reqs = {}
local n = 0
local i = 0

-- thread state
function init(args)
  local file, threads = args[1], tonumber(args[2] or "1")
  if file == nil then error("rotate.lua: usage: -s rotate.lua URL -- TOKEN_FILE THREADS") end
  local f = assert(io.open(file, "r"))
  for line in f:lines() do
    if line ~= "" then
      local headers = {}
      for k, v in pairs(wrk.headers) do headers[k] = v end
      headers["Authorization"] = "Bearer " .. line
      n = n + 1
      reqs[n] = wrk.format("GET", wrk.path, headers)
    end
  end
  f:close()
  if n == 0 then error("rotate.lua: no token in " .. file) end
  -- i is the index of the last request sent: the first is i + 1
  i = math.floor((thread_no or 0) * n / threads) % n
end

function request()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end
