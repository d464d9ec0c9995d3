-- wrk script: POST the JSON body named by $GI2_BENCH_BODY on every request.
local path = os.getenv("GI2_BENCH_BODY")
local f = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
