"""The direct front: how `uwsgi --ini uwsgi.ini` (make run, Heroku) takes HTTP.

    client -> uWSGI's HTTP router (:PORT)     headers, keep-alive, chunked answers
           -> relay.py (a mule, Unix socket)  whole bodies, their deadlines
           -> the workers (Unix socket)       the app (wsgi.py)

Both private sockets are in RUNTIME_DIR, mode 600 (uwsgi.ini). Behind Nginx
(`uwsgi.ini:nginx`) none of this runs: Nginx reads whole bodies itself.
"""
