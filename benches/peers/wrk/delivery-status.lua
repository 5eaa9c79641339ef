-- GET /api/v1/deliveries/{id}/status for one delivery (a read of the cqrs-es view).
--   wrk -t1 -c1 -d5s -s benches/peers/wrk/delivery-status.lua http://127.0.0.1:PORT -- DELIVERY_ID
function init(args)
  local id = args[1] or error("pass a delivery id after --")
  wrk.path = "/api/v1/deliveries/" .. id .. "/status"
end
