"""The SQLAlchemy object, created once and bound to the app in `create_app`."""

from flask_sqlalchemy import SQLAlchemy

# Sessions live for one request, so objects need not be re-read after a commit
# (that would cost a SELECT per object returned by a write).
db = SQLAlchemy(session_options={"expire_on_commit": False})
