"""gunicorn's settings, read by ``gunicorn config.wsgi`` from this folder (production).

The access and error logs go through the card-number filter of
config/logging.py (an esipay path carries a card number; a query string of
the secure API carries an encrypted payload, which the access log leaves
out: ``%(U)s`` is the path alone). Every setting can be overridden on the
command line or in GUNICORN_CMD_ARGS.
"""
from __future__ import annotations

import os
import sys

# Run from anywhere: the project's modules (config.logging) must be importable here.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gunicorn.glogging import Logger  # noqa: E402

from config.logging import RedactCardNumbers  # noqa: E402

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads per worker: requests wait on PostgreSQL and the acquirer, so a few
# threads keep a worker's CPU busy; each has its own database connection.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 20
accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'


class RedactingLogger(Logger):
    """gunicorn's logger, with the card-number filter on its access and error logs."""

    def setup(self, cfg):  # type: ignore[no-untyped-def]
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            if not any(isinstance(existing, RedactCardNumbers) for existing in log.filters):
                log.addFilter(RedactCardNumbers())


logger_class = RedactingLogger

# gunicorn's control socket lives at one path per user ($HOME/.gunicorn/gunicorn.ctl):
# two instances on one machine (a blue/green switch, the tests) would fight over it.
# Nothing here uses it; pass --control-socket PATH to have one.
control_socket_disable = True
