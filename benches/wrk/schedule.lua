-- POST /api/v1/deliveries for one account (the script's first argument): a delivery
-- and its package in one durable record per request, no idempotency key.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
  wrk.body = '{"ownerId": "' .. args[1] .. '", "pickup": {"latitude": 47.61, "longitude": -122.33, "altitude": 0}, '
    .. '"dropoff": {"latitude": 47.65, "longitude": -122.30, "altitude": 0}, "deadline": "2030-01-01T00:00:00Z", '
    .. '"expedited": false, "confirmationRequired": "None", "packageInfo": {"size": "small", "weight": 1.2}}'
end
