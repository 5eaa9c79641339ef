-- POST /api/v1/drones/load-<n>/telemetry for a random one of 64 drones: one durable
-- telemetry event per request.
local body = '{"position": {"latitude": 47.61, "longitude": -122.31, "altitude": 80}, "batteryPct": 80, "at": "2026-11-24T12:00:00Z"}'
local headers = {["Content-Type"] = "application/json"}
request = function()
  local path = string.format("/api/v1/drones/load-%d/telemetry", math.random(0, 63))
  return wrk.format("POST", path, headers, body)
end
