"""Tests: the dev settings with fixed keys and fast password hashing."""
from .dev import *  # noqa: F401,F403

PAYMENTS_MASTER_KEY = "test-master-key-not-for-production-0123456789"
SECRET_KEY = "test-secret-key-not-for-production"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
PAYMENTS_ALLOW_PRIVATE_CALLBACKS = True
