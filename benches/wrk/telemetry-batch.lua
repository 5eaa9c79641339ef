-- POST /api/v1/telemetry: a batch of 100 reports of random drones among `load-0` ..
-- `load-<drones - 1>` (wrk ... -- <drones>), stamped with the current second. Each drone
-- is somewhere in the city and moves a few metres between its reports, as a drone in the
-- air or on its charger does.
local drones = 1000
local headers = {["Content-Type"] = "application/json"}
local stamp, stamped_at = nil, -1
local lat, lon = {}, {}

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
    local d = math.random(0, drones - 1)
    -- Where the drone is comes from its number, so wrk's threads agree on it.
    if not lat[d] then lat[d], lon[d] = 47.5 + (d * 7919 % 1000) / 5000, -122.4 + (d * 104729 % 1000) / 5000 end
    lat[d] = lat[d] + (math.random() - 0.5) * 0.0004
    lon[d] = lon[d] + (math.random() - 0.5) * 0.0006
    items[i] = string.format(
      '{"droneId":"load-%d","position":{"latitude":%.6f,"longitude":%.6f,"altitude":80},"batteryPct":%d,"at":"%s"}',
      d, lat[d], lon[d], math.random(30, 100), stamp)
  end
  return wrk.format("POST", "/api/v1/telemetry", headers, "[" .. table.concat(items, ",") .. "]")
end
