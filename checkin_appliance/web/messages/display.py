"""Texts of the display page(s)."""

MESSAGES: dict[str, dict[str, str]] = {"en": {}, "es": {}}
