"""Users and their tokens: register, login, refresh, logout, one user by id,
its password, and ending all of its sessions."""

from flask import current_app, request
from flask_jwt_extended import get_jwt, jwt_required
from flask_restful import Resource
from werkzeug.http import dump_cookie

from core import arguments
from core.errors import ApiError, conflict, not_found
from core.passwords import passwords
from core.permissions import current_user_id, current_user_is_admin, fresh_jwt_required
from core.rate_limits import rate_limits
from core.tokens import (
    DEVICE_COOKIE,
    blocklist,
    issue_device_token,
    issue_tokens,
    presented_device_token,
    refreshed_access_token,
    trusted_device,
)
from db import db
from models import commit_or_raise
from models.user import UserModel

credentials_parser = arguments.body_parser()
credentials_parser.add_argument("username", type=arguments.username, required=True)
credentials_parser.add_argument("password", type=arguments.password, required=True)

password_change_parser = arguments.body_parser()
password_change_parser.add_argument("current_password", type=arguments.text(1, 200), required=True)
password_change_parser.add_argument("new_password", type=arguments.password, required=True)

# Login only needs the fields present; their format is register's business.
login_parser = arguments.body_parser()
login_parser.add_argument("username", type=arguments.text(1, 200), required=True)
login_parser.add_argument("password", type=arguments.text(1, 200), required=True)

NO_STORE = {"Cache-Control": "no-store"}


class UserRegister(Resource):
    def post(self):
        data = credentials_parser.parse_args()
        # Counted before the name check: probing for taken names costs an
        # attacker the same budget as creating accounts.
        rate_limits().hit_register()
        name_taken = conflict("A user with that username already exists.")
        if UserModel.username_taken(data["username"]):
            raise name_taken
        user = UserModel(username=data["username"], password_hash=passwords().hash(data["password"]))
        db.session.add(user)
        # Another request may register the same name between the check and here.
        commit_or_raise(name_taken)
        return {"message": "User created successfully.", "id": user.id}, 201


def device_cookie(token):
    """The device token as an HttpOnly cookie that only /login receives."""
    return dump_cookie(
        DEVICE_COOKIE,
        token,
        max_age=int(current_app.config["DEVICE_TOKEN_EXPIRES"].total_seconds()),
        path="/login",
        secure=request.is_secure,
        httponly=True,
        samesite="Strict",
    )


class UserLogin(Resource):
    """Rate-limited per address and per username, except for the owner's own
    devices (a device token of that user): core/rate_limits.py."""

    def post(self):
        data = login_parser.parse_args()
        attempt = "user:" + data["username"].lower()
        user = UserModel.find_by_username(data["username"])
        device = trusted_device(user, presented_device_token())
        rate_limits().check_login(attempt, device)
        # Verify even for an unknown user, so both failures cost the same time.
        password_ok = passwords().verify(user.password_hash if user else None, data["password"])
        if user is None or not password_ok:
            rate_limits().login_failed(attempt, device)
            raise ApiError(401, "invalid_credentials", "Invalid username or password.")
        if passwords().needs_rehash(user.password_hash):
            # Made with an older (weaker) cost: the password is at hand, so
            # store it again at today's cost.
            user.password_hash = passwords().hash(data["password"])
            db.session.commit()
        device_token = issue_device_token(user)
        headers = {**NO_STORE, "Set-Cookie": device_cookie(device_token)}
        return {**issue_tokens(user), "device_token": device_token}, 200, headers


class TokenRefresh(Resource):
    @jwt_required(refresh=True)
    def post(self):
        user = UserModel.find_by_id(current_user_id())
        if user is None:
            raise ApiError(401, "invalid_token", "The token does not belong to an existing account.")
        return {"access_token": refreshed_access_token(user, get_jwt())}, 200, NO_STORE


class UserLogout(Resource):
    @jwt_required()
    def post(self):
        # Revoking the session revokes its refresh token and every access token from it.
        blocklist().revoke_session(get_jwt()["sid"])
        return {"message": "Successfully logged out."}, 200


def require_self_or_admin(user_id):
    """403 forbidden unless the token is that user's or an admin's (whether or
    not the user exists: a stranger learns nothing about other ids)."""
    if user_id != current_user_id() and not current_user_is_admin():
        raise ApiError(403, "forbidden", "You may only access your own user.")


def find_user(user_id):
    user = UserModel.find_by_id(user_id)
    if user is None:
        raise not_found("User not found.")
    return user


class User(Resource):
    """One user. Only that user or an admin may see or delete it (403 otherwise)."""

    @jwt_required()
    def get(self, user_id):
        require_self_or_admin(user_id)
        return find_user(user_id).json(), 200

    @fresh_jwt_required
    def delete(self, user_id):
        require_self_or_admin(user_id)
        db.session.delete(find_user(user_id))
        # The row is the record: its tokens find no account any more.
        db.session.commit()
        return {"message": "User deleted."}, 200


class UserPassword(Resource):
    """PUT /user/<id>/password: only that user, with a fresh token and the
    current password. Every session of the user ends, this one included.
    Wrong current passwords are rate-limited like logins."""

    @fresh_jwt_required
    def put(self, user_id):
        if user_id != current_user_id():
            raise ApiError(403, "forbidden", "You may only change your own password.")
        data = password_change_parser.parse_args()
        user = find_user(user_id)
        attempt = "user:" + user.username.lower()
        # The caller has just logged in: only this session's own failures count.
        session = "session:" + get_jwt()["sid"]
        rate_limits().check_login(attempt, session)
        if not passwords().verify(user.password_hash, data["current_password"]):
            rate_limits().login_failed(attempt, session)
            raise ApiError(401, "invalid_credentials", "The current password is wrong.")
        user.password_hash = passwords().hash(data["new_password"])
        UserModel.end_all_sessions(user_id)
        db.session.commit()
        return {"message": "Password changed."}, 200


class UserSessions(Resource):
    """DELETE /user/<id>/sessions: log the user out everywhere (that user or an admin)."""

    @fresh_jwt_required
    def delete(self, user_id):
        require_self_or_admin(user_id)
        if not UserModel.end_all_sessions(user_id):
            raise not_found("User not found.")
        db.session.commit()
        return {"message": "All sessions ended."}, 200
