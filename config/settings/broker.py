"""Celery's embedded broker (kombu's filesystem transport): one machine, no server.

Messages are files in a folder; dev and test settings make the folders,
production refuses this broker (config/settings/production.py).
"""
from __future__ import annotations

from pathlib import Path

_FOLDERS = ("data_folder_in", "processed_folder", "control_folder")


def filesystem_broker_options(folder: Path) -> dict[str, object]:
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }


def make_broker_folders(options: dict[str, object]) -> None:
    for key in _FOLDERS:
        Path(str(options[key])).mkdir(parents=True, exist_ok=True)
