"""Development: works on a fresh clone with nothing configured."""
from .base import *  # noqa: F401,F403
from .base import CELERY_BROKER_URL, DATABASES, VAR_DIR, env
from .secrets import dev_secret

DEBUG = env.bool("DJANGO_DEBUG", default=True)
# Generated into var/ only for the embedded SQLite database: a server
# database keeps data made with its own key, which must be given
# (config/settings/environment.py). First, so a refusal leaves var/ untouched.
PAYMENTS_MASTER_KEY = dev_secret("PAYMENTS_MASTER_KEY", VAR_DIR, database=DATABASES["default"])
SECRET_KEY = dev_secret("DJANGO_SECRET_KEY", VAR_DIR)

if CELERY_BROKER_URL.startswith("filesystem://"):
    from .base import CELERY_BROKER_TRANSPORT_OPTIONS
    from .broker import make_broker_folders

    make_broker_folders(CELERY_BROKER_TRANSPORT_OPTIONS)
