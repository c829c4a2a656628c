-- wrk script: POST /login with a JSON body, the same credentials every time.
-- Usage: wrk ... -s bench/login.lua http://127.0.0.1:PORT/login -- USERNAME PASSWORD
-- The username and password are chosen by bench/run.py (letters, digits, '-',
-- '_', '.'), so they need no JSON escaping.

function init(args)
  if #args ~= 2 then
    error("usage: wrk ... -s login.lua URL -- USERNAME PASSWORD")
  end
  -- init() runs in each wrk thread before its request is built, so these
  -- settings become the request every connection sends.
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = string.format('{"username": "%s", "password": "%s"}', args[1], args[2])
end
