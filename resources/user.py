"""Users and their tokens: register, login, refresh, logout, and one user by id."""
from flask import current_app
from flask_limiter.util import get_remote_address
from flask_jwt_extended import get_jwt, jwt_required
from flask_restful import Resource

from db import db
from errors import ApiError, conflict, not_found
from models import commit_or_raise
from models.user import UserModel
from resources import arguments
from security import (
    current_user_id,
    current_user_is_admin,
    fresh_jwt_required,
    issue_tokens,
    passwords,
    refreshed_access_token,
    revocation_store,
)

credentials_parser = arguments.body_parser()
credentials_parser.add_argument("username", type=arguments.username, required=True)
credentials_parser.add_argument("password", type=arguments.password, required=True)

# Login only needs the fields present; their format is register's business.
login_parser = arguments.body_parser()
login_parser.add_argument("username", type=arguments.text(1, 200), required=True)
login_parser.add_argument("password", type=arguments.text(1, 200), required=True)

NO_STORE = {"Cache-Control": "no-store"}


def login_rate_limit():
    return current_app.config["LOGIN_RATE_LIMIT"]


def login_attempt_keys():
    """What /login attempts are counted by: the client address and the username tried."""
    return {"login-address": get_remote_address, "login-username": username_key}


def username_key():
    """Rate-limit key: the username tried, whatever the client address."""
    try:
        name = arguments.request_body().get("username")
    except ApiError:
        name = None  # the parser answers the bad body itself
    return f"user:{name.lower()}" if isinstance(name, str) else "user:"


class UserRegister(Resource):
    def post(self):
        data = credentials_parser.parse_args()
        name_taken = conflict("A user with that username already exists.")
        if UserModel.find_by_username(data["username"]):
            raise name_taken
        user = UserModel(username=data["username"], password_hash=passwords().hash(data["password"]))
        db.session.add(user)
        # Another request may register the same name between the check and here.
        commit_or_raise(name_taken)
        return {"message": "User created successfully.", "id": user.id}, 201


class UserLogin(Resource):
    """Rate-limited per address and per username (see `login_attempt_keys`)."""

    def post(self):
        data = login_parser.parse_args()
        user = UserModel.find_by_username(data["username"])
        # Verify even for an unknown user, so both failures cost the same time.
        password_ok = passwords().verify(user.password_hash if user else None, data["password"])
        if user is None or not password_ok:
            raise ApiError(401, "invalid_credentials", "Invalid username or password.")
        return issue_tokens(user), 200, NO_STORE


class TokenRefresh(Resource):
    @jwt_required(refresh=True)
    def post(self):
        user = UserModel.find_by_id(current_user_id())
        if user is None:
            raise ApiError(401, "invalid_token", "The token's user no longer exists.")
        return {"access_token": refreshed_access_token(user, get_jwt())}, 200, NO_STORE


class UserLogout(Resource):
    @jwt_required()
    def post(self):
        # Revoking the session revokes its refresh token and every access token from it.
        revocation_store().revoke_session(get_jwt()["sid"])
        return {"message": "Successfully logged out."}, 200


class User(Resource):
    """One user. Only that user or an admin may see or delete it (403 otherwise)."""

    @staticmethod
    def _allowed(user_id):
        if user_id != current_user_id() and not current_user_is_admin():
            raise ApiError(403, "forbidden", "You may only access your own user.")
        user = UserModel.find_by_id(user_id)
        if user is None:
            raise not_found("User not found.")
        return user

    @jwt_required()
    def get(self, user_id):
        return self._allowed(user_id).json(), 200

    @fresh_jwt_required
    def delete(self, user_id):
        user = self._allowed(user_id)
        db.session.delete(user)
        db.session.commit()
        revocation_store().revoke_user(user_id)
        return {"message": "User deleted."}, 200
