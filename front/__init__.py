"""The direct front: how `uwsgi --ini uwsgi.ini` (make run, Heroku) takes HTTP.

    client -> relay.py (a mule, on :PORT)      heads, whole bodies, their
                                               deadlines, keep-alive
           -> the workers (a Unix socket)      the app (wsgi.py)

uWSGI's master opens the public port and the workers' socket (RUNTIME_DIR,
mode 600; uwsgi.ini). Behind Nginx (`uwsgi.ini:nginx`) none of this runs:
Nginx reads whole requests itself.
"""
