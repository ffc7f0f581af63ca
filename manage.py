#!/usr/bin/env python
"""Django's command-line utility for the payment gateway.

With nothing configured (a fresh clone, ``make run``) it runs the
development settings on the embedded SQLite database. Where the database is
a server (``DATABASE_URL`` names PostgreSQL) it runs only the settings it is
told (``DJANGO_SETTINGS_MODULE``): a production listener, worker or import
started without them refuses to start instead of generating a new master
key (config/settings/environment.py says why).
"""
import os
import sys


def main() -> None:
    from config.settings.environment import RefusedToStart, manage_settings_module
    from config.settings.secrets import MissingSecret

    try:
        os.environ["DJANGO_SETTINGS_MODULE"] = manage_settings_module(argv=sys.argv[1:])
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
    except (RefusedToStart, MissingSecret) as exc:
        # One clear line, not a traceback through Django's settings loader.
        sys.stderr.write(f"manage.py: refusing to start: {type(exc).__name__}: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
