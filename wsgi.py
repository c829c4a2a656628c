"""The WSGI entry point: what uWSGI loads (`module = wsgi:app` in uwsgi.ini).

With `lazy-apps`, each worker imports this after the fork, so each builds its
own app and database connections.
"""
from app import create_app

app = create_app()
