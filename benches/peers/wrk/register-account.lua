-- POST /api/v1/accounts: one RegisterAccount command (one durable event) per request.
--   wrk -t1 -c1 -d5s -s benches/peers/wrk/register-account.lua http://127.0.0.1:PORT
wrk.method = "POST"
wrk.path = "/api/v1/accounts"
wrk.body = '{"name":"Contoso","email":"ops@contoso.example"}'
wrk.headers["Content-Type"] = "application/json"
