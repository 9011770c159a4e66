"""Texts of the staff page(s)."""

MESSAGES: dict[str, dict[str, str]] = {"en": {}, "es": {}}
