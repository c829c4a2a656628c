"""Flask extensions other than the database, created once and bound in `create_app`."""
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate

jwt = JWTManager()
migrate = Migrate()
# Only /login is limited; its limits are set on the resource. Storage is
# Redis when REDIS_URL is set (shared by every process), else memory.
limiter = Limiter(key_func=get_remote_address)
