"""The course API's Flask-RESTful resources, one module each: `user.py`
(register, login, tokens, accounts), `store.py`, `item.py`, `health.py`.
`app.register_resources` maps them, and the image and webhook resources of
`images/` and `webhooks/`, to their URLs."""
