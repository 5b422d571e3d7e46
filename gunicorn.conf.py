"""Gunicorn reads this file from the directory it starts in (every `gunicorn config.wsgi` here).

Keep idle connections open longer than a page waits between its polls (2-5 s): with gunicorn's
default of 2 s, a browser's or proxy's next request on a kept-alive connection races the
server closing it, and loses now and then (connection reset)."""
keepalive = 15
