"""Flask extensions other than the database, created once and bound in `create_app`."""
from flask_jwt_extended import JWTManager
from flask_migrate import Migrate

jwt = JWTManager()
migrate = Migrate()
# The rate limiter is made per app in `create_app`: Flask-Limiter keeps its
# storage on the Limiter object, so one shared object would mix apps' counters.
