-- POST /api/v1/deliveries for one owner: one ScheduleDelivery command per request.
--   wrk -t1 -c1 -d5s -s benches/peers/wrk/schedule-delivery.lua http://127.0.0.1:PORT -- ACCOUNT_ID
wrk.method = "POST"
wrk.path = "/api/v1/deliveries"
wrk.headers["Content-Type"] = "application/json"

function init(args)
  local owner = args[1] or error("pass the owner's account id after --")
  wrk.body = '{"ownerId":"' .. owner .. '",'
    .. '"pickup":{"latitude":47.61,"longitude":-122.33,"altitude":0},'
    .. '"dropoff":{"latitude":47.65,"longitude":-122.30,"altitude":0},'
    .. '"deadline":"2030-01-01T00:00:00Z","expedited":false,"confirmationRequired":"None",'
    .. '"packageInfo":{"size":"small","weight":1.5,"tag":"books"}}'
end
