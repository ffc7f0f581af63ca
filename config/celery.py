"""The Celery app: outbox deliveries (webhooks), refunds with the acquirer, the sweep.

Reliability comes from the database, not from the broker: every piece of
work is a row (a webhook delivery, a pending refund) written in the same
transaction as the change it follows. Tasks take ids, claim their row with a
conditional UPDATE and a lease, and are safe to run twice. A message the
broker loses, or a worker killed mid-task, only delays the work: the
periodic sweep (``payments.tasks.sweep_outbox``) re-enqueues every due row
whose lease has run out.
"""
from __future__ import annotations

import os

from celery import Celery
from celery.app import trace

# Millisecond runtimes: Celery's full float ("0.0099170000000342s") is a run of
# digits that the card-number log filter (config/logging.py) would mask.
trace.LOG_SUCCESS = "Task %(name)s[%(id)s] succeeded in %(runtime).3fs: %(return_value)s"

# As config/wsgi.py: a worker started with nothing set runs the production
# settings (which refuse to start without their secrets, a database and a
# broker), never the dev ones. `make run` and tests pass the dev/test settings.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

# ``celery -A config`` finds this module by itself; Django processes import it
# through ``payments.tasks`` (never from ``config/__init__``, which would set
# the dev settings as a default for the production WSGI entry point too).
app = Celery("gateway")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
