"""Serving: the gunicorn command and its hooks, the gevent worker, request logs and metrics."""
