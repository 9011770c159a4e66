"""Texts of the kiosk page(s)."""

MESSAGES: dict[str, dict[str, str]] = {"en": {}, "es": {}}
