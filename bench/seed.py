"""Put the benchmark's data into the real app.

The measured sizes are seeded over HTTP, through the API's own endpoints, as a
client would (register, login, POST /store/<name>, POST /item/<name>). The
100,000-item paging run is seeded straight into the SQLite file instead:
through HTTP that would take minutes, and paging only needs the rows there.
"""

import sqlite3

import requests

USERNAME = "bench-user"
PASSWORD = "bench-password-1"


def item_name(number):
    return f"item-{number:06d}"


def store_name(number):
    return f"store-{number:02d}"


def item_price(number):
    # Prices with 0-2 decimals, like real ones; round() gives the shortest float.
    return round(1 + (number % 100_000) / 100, 2)


class ApiClient:
    """The few API calls seeding needs; any non-2xx answer stops the benchmark."""

    def __init__(self, base_url):
        self.base_url = base_url
        self.access_token = None

    def call(self, method, path, expect, **kwargs):
        # A new connection per call, on purpose: uWSGI's http-socket closes the
        # connection after each response without saying "Connection: close",
        # so a pooled connection (requests.Session) may be reused just as the
        # server closes it, and the POST sent on it is answered with a reset.
        response = requests.request(method, self.base_url + path, timeout=30, **kwargs)
        if response.status_code not in expect:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response

    def auth(self):
        return {"Authorization": f"Bearer {self.access_token}"}

    def register_and_login(self):
        credentials = {"username": USERNAME, "password": PASSWORD}
        self.call("POST", "/register", (201,), json=credentials)
        tokens = self.call("POST", "/login", (200,), json=credentials).json()
        # Fresh: POST /item/<name> requires a fresh token, and login gives one.
        self.access_token = tokens["access_token"]
        return self.access_token

    def create_store(self, name):
        return self.call("POST", f"/store/{name}", (201,), headers=self.auth()).json()["id"]

    def create_item(self, name, price, store_id):
        body = {"price": price, "store_id": store_id}
        return self.call("POST", f"/item/{name}", (201,), headers=self.auth(), json=body).json()


def seed_over_http(client, stores, items_per_store):
    """`stores` stores of `items_per_store` items each; returns the item names."""
    names = []
    for store_number in range(1, stores + 1):
        store_id = client.create_store(store_name(store_number))
        for _ in range(items_per_store):
            number = len(names) + 1
            client.create_item(item_name(number), item_price(number), store_id)
            names.append(item_name(number))
    return names


def bulk_insert_items(db_path, template_name, total):
    """Copy the row of item `template_name` (made over HTTP) until the items
    table holds `total` rows, numbering names on from the template's."""
    connection = sqlite3.connect(db_path, timeout=30)
    try:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(items)")]
        values = connection.execute(
            f"SELECT {', '.join(columns)} FROM items WHERE name = ?", (template_name,)
        ).fetchone()
        if values is None:
            raise RuntimeError(f"item {template_name!r} is not in {db_path}")
        template = dict(zip(columns, values, strict=True))
        del template["id"]  # the database numbers the copies
        have = connection.execute("SELECT count(*) FROM items").fetchone()[0]
        rows = []
        for number in range(have + 1, total + 1):
            rows.append(dict(template, name=item_name(number), price=item_price(number)))
        names = ", ".join(template)
        placeholders = ", ".join(f":{column}" for column in template)
        with connection:  # one transaction
            connection.executemany(f"INSERT INTO items ({names}) VALUES ({placeholders})", rows)
        return connection.execute("SELECT count(*) FROM items").fetchone()[0]
    finally:
        connection.close()


def password_hash(db_path):
    """The stored hash of the bench user (to report the argon2 parameters)."""
    connection = sqlite3.connect(db_path, timeout=30)
    try:
        row = connection.execute("SELECT password_hash FROM users WHERE username = ?", (USERNAME,)).fetchone()
        return row[0] if row else None
    finally:
        connection.close()
