"""Users of an in-process app, registered and logged in through the API itself."""

from db import db
from models.user import UserModel


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


class Users:
    """Registers users and logs them in through the API itself."""

    def __init__(self, app, client):
        self.app, self.client = app, client
        self.count = 0

    def create(self, username=None, password="correct-horse", admin=False):
        self.count += 1
        username = username or f"user{self.count}"
        response = self.client.post("/register", json={"username": username, "password": password})
        assert response.status_code == 201, response.get_json()
        user_id = response.get_json()["id"]
        if admin:
            with self.app.app_context():
                db.session.get(UserModel, user_id).is_admin = True
                db.session.commit()
        tokens = self.login(username, password)
        return {
            "id": user_id,
            "username": username,
            "password": password,
            **tokens,
            "headers": bearer(tokens["access_token"]),
        }

    def login(self, username, password="correct-horse"):
        response = self.client.post("/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def refreshed_headers(self, user):
        response = self.client.post("/refresh", headers=bearer(user["refresh_token"]))
        assert response.status_code == 200, response.get_json()
        return bearer(response.get_json()["access_token"])
