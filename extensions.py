"""Flask extensions other than the database, created once and bound in `create_app`."""
from flask_jwt_extended import JWTManager

jwt = JWTManager()
# Made per app in `create_app` instead:
# - the rate limiter: Flask-Limiter keeps its storage on the Limiter object,
#   so one shared object would mix the counters of several apps;
# - Flask-Migrate: only where the `flask db` commands can run (see app.py).
