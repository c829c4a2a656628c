-- wrk script: PUT /item/<name> with a JSON body (an update: one event per request).
-- Usage: wrk ... -s bench/put_item.lua http://127.0.0.1:PORT/item/NAME -- TOKEN STORE_ID
function init(args)
  wrk.method = "PUT"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[1]
  wrk.body = string.format('{"price": 12.5, "store_id": %s}', args[2])
end
