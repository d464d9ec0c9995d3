-- wrk script for bench/soak.sh: a mix of request kinds, each with the
-- status it must get, sent at a fixed pace per connection.
--
-- Environment: SOAK_DELAY_MS (pause before each request of a connection,
-- 0 = as fast as possible), SOAK_STOP_AT (a Unix time: no request is sent
-- after it, so wrk, run a little longer, ends with every request sent
-- answered and the count of records can be exact), SOAK_TOKEN (the bearer token every request
-- carries), SOAK_MARK (a string put in every prompt; neither may appear in
-- any log).
--
-- The gateway echoes X-Soak-Kind back (add_header ... always), so each
-- answer is checked against the status its kind must get.

local delay_ms = tonumber(os.getenv("SOAK_DELAY_MS") or "0")
local stop_at = tonumber(os.getenv("SOAK_STOP_AT") or "0")
local token = os.getenv("SOAK_TOKEN") or "sk-soak-unset"
local mark = os.getenv("SOAK_MARK") or "soak-mark-unset"

-- kind, weight, path, body, extra header, expected status
local kinds = {
    { "allow", 40, "/gi2/small/v1/images/generations",
      '{"model":"gpt-image-1","prompt":"a lighthouse at dawn, %s %d"}',
      nil, 200 },
    { "rule", 15, "/gi2/small/v1/images/generations",
      '{"model":"gpt-image-1","prompt":"a nude figure, %s %d"}',
      nil, 400 },
    { "low", 10, "/gi2/small/v1/images/generations",
      '{"prompt":"a harbour, %s %d","moderation":"low"}',
      nil, 400 },
    { "rewrite", 10, "/rw/small/v1/images/generations",
      '{"prompt":"a harbour, %s %d","moderation":"low"}',
      nil, 200 },
    { "exception", 8, "/gi2/small/v1/images/generations",
      '{"prompt":"a harbour, %s %d","moderation":"low"}',
      "EXC-SOAK-1", 200 },
    { "stream", 10, "/gi2/sse/v1/images/generations",
      '{"prompt":"a kite, %s %d","stream":true,"partial_images":2}',
      nil, 200 },
    { "bad", 5, "/gi2/small/v1/images/generations",
      '{"prompt":"unterminated %s %d',
      nil, 400 },
    { "big", 2, "/gi2/8m/v1/images/generations",
      '{"model":"gpt-image-1","prompt":"a big one, %s %d"}',
      nil, 200 },
}

local expect = {}
local wheel = {}
for i, k in ipairs(kinds) do
    expect[k[1]] = k[6]
    for _ = 1, k[2] do
        wheel[#wheel + 1] = i
    end
end

local threads = {}

function setup(thread)
    thread:set("id", #threads + 1)
    threads[#threads + 1] = thread
end

function init(args)
    sent = 0
    got = 0
    bad = 0
    first_bad = ""
    counts = {}
    n = 0
    -- wrk calls request() once on its first thread to check the script
    -- (script_verify_request) and never sends that one
    probe = (id == 1)
    math.randomseed(id * 7919)
end

function delay()
    if stop_at > 0 and os.time() >= stop_at then
        return 3600000
    end
    return delay_ms
end

function request()
    local k = kinds[wheel[math.random(#wheel)]]
    local h = {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer " .. token,
        ["X-Soak-Kind"] = k[1],
        -- a connection a request: with keep-alive, a reload's old worker
        -- closes idle connections and a request sent at that instant is
        -- lost to the race every HTTP/1.1 client has; that would hide
        -- whether gi2 lost one
        ["Connection"] = "close",
    }
    if k[5] then
        h["X-GI2-Exception"] = k[5]
    end
    n = n + 1
    if probe then
        probe = false
    else
        sent = sent + 1
    end
    return wrk.format("POST", k[3], h, string.format(k[4], mark, n))
end

function response(status, headers, body)
    local kind = headers["X-Soak-Kind"] or "?"
    got = got + 1
    counts[kind] = (counts[kind] or 0) + 1
    if expect[kind] ~= status then
        bad = bad + 1
        if first_bad == "" then
            first_bad = kind .. ":" .. status
        end
    end
end

function done(summary, latency, requests)
    local s, g, b, fb = 0, 0, 0, ""
    local all = {}
    for _, t in ipairs(threads) do
        s = s + t:get("sent")
        g = g + t:get("got")
        b = b + t:get("bad")
        if fb == "" then
            fb = t:get("first_bad")
        end
        local c = t:get("counts")
        for k, v in pairs(c) do
            all[k] = (all[k] or 0) + v
        end
    end
    local parts = {}
    for _, k in ipairs(kinds) do
        parts[#parts + 1] = k[1] .. "=" .. (all[k[1]] or 0)
    end
    if all["?"] then
        parts[#parts + 1] = "unknown=" .. all["?"]
    end
    local e = summary.errors
    io.write(string.format("soak-result sent=%d answered=%d wrong=%d "
        .. "errors=%d p99_ms=%.1f kinds=%s first_wrong=%s\n",
        s, g, b, e.connect + e.read + e.write + e.timeout,
        latency:percentile(99) / 1000, table.concat(parts, ","),
        fb ~= "" and fb or "-"))
end
