"""The one message catalog: every UI text, in English and Spanish, by dotted key.

Each page's texts live in web/messages/<part>.py as MESSAGES = {"en": {...}, "es": {...}};
this module merges them and refuses a catalog where a language misses a key.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache

LANGUAGES = ("en", "es")
# Listed rather than discovered, so the frozen executable carries exactly these.
PARTS = ("common", "kiosk", "display", "staff", "tls", "intake", "visit", "system", "backups")
DEFAULT_LANGUAGE = "en"


@cache
def catalog() -> dict[str, dict[str, str]]:
    merged: dict[str, dict[str, str]] = {lang: {} for lang in LANGUAGES}
    for name in PARTS:
        part = importlib.import_module(f"checkin_appliance.web.messages.{name}").MESSAGES
        for lang in LANGUAGES:
            clash = merged[lang].keys() & part[lang].keys()
            if clash:
                raise RuntimeError(f"message keys defined twice: {sorted(clash)}")
            merged[lang].update(part[lang])
    missing = merged["en"].keys() ^ merged["es"].keys()
    if missing:
        raise RuntimeError(f"message keys missing in a language: {sorted(missing)}")
    return merged


def language_or_default(lang: str | None) -> str:
    return lang if lang in LANGUAGES else DEFAULT_LANGUAGE


def translator(lang: str) -> Callable[..., str]:
    """t("kiosk.title") or t("kiosk.position", n=3): the text with {n} filled in."""
    texts = catalog()[language_or_default(lang)]

    def t(key: str, **values: object) -> str:
        text = texts[key]  # a missing key is a bug; tests render every page in both languages
        return text.format(**values) if values else text

    return t


def for_page(*prefixes: str) -> dict[str, dict[str, str]]:
    """The texts a page's script needs (both languages, so a kiosk can switch at once)."""
    return {
        lang: {k: v for k, v in texts.items() if k.startswith(("common.", *prefixes))}
        for lang, texts in catalog().items()
    }
