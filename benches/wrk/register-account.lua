-- POST /api/v1/accounts: one durable event per request.
wrk.method = "POST"
wrk.body = '{"name": "Contoso", "email": "ops@contoso.example"}'
wrk.headers["Content-Type"] = "application/json"
