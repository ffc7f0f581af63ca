"""Import a ban list CSV (kind,value,reason): the whole file or nothing."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from payments.services import BanImportError, bans_import


class Command(BaseCommand):
    help = "Import bans from a CSV file with header kind,value,reason (kinds: card, bin, check, pin)."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("file")

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        try:
            with open(options["file"], newline="", encoding="utf-8-sig") as fh:
                result = bans_import(fh)
        except OSError as exc:
            raise CommandError(f"cannot read {options['file']}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{options['file']} is not UTF-8 text; nothing imported") from None
        except BanImportError as exc:
            raise CommandError(f"{options['file']}: {exc}; nothing imported") from None
        self.stdout.write(json.dumps({"imported": result.imported, "skipped": result.skipped}))
