"""Production: refuses to start without its secrets and a real database."""
from .base import *  # noqa: F401,F403
from .base import TRUSTED_PROXIES, env
from .secrets import MissingSecret, require_secret

DEBUG = False
SECRET_KEY = require_secret("DJANGO_SECRET_KEY")
PAYMENTS_MASTER_KEY = require_secret("PAYMENTS_MASTER_KEY")
if not env.str("DATABASE_URL", default=""):
    raise MissingSecret("DATABASE_URL is not set. Production refuses to fall back to SQLite.")
if not env.str("CELERY_BROKER_URL", default=""):
    raise MissingSecret(
        "CELERY_BROKER_URL is not set. Production refuses the embedded broker: use redis://... or amqp://..."
    )

SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
# Only behind a proxy: without one, any client could send X-Forwarded-Proto
# and be taken for HTTPS (Django reads the header from whoever sent it).
if TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
