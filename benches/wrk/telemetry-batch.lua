-- POST /api/v1/telemetry: a batch of 100 reports of random drones among `load-0` ..
-- `load-<drones - 1>` (wrk ... -- <drones>), stamped with the current second.
local drones = 1000
local headers = {["Content-Type"] = "application/json"}
local stamp, stamped_at = nil, -1

init = function(args)
  if args[1] then drones = tonumber(args[1]) end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

request = function()
  local now = os.time()
  if now ~= stamped_at then
    stamp, stamped_at = os.date("!%Y-%m-%dT%H:%M:%SZ", now), now
  end
  local items = {}
  for i = 1, 100 do
    items[i] = string.format(
      '{"droneId":"load-%d","position":{"latitude":%.5f,"longitude":%.5f,"altitude":80},"batteryPct":%d,"at":"%s"}',
      math.random(0, drones - 1), 47.5 + math.random() * 0.2, -122.4 + math.random() * 0.2,
      math.random(30, 100), stamp)
  end
  return wrk.format("POST", "/api/v1/telemetry", headers, "[" .. table.concat(items, ",") .. "]")
end
