"""Bahasa Indonesia and English: gettext catalogs (Babel .po files), and dates and money
in the person's locale.

The catalogs are the `.po` files under `locale/<language>/LC_MESSAGES/`, read and
compiled at start-up (no compiled `.mo` files in the repository). Messages are written in
English in the code and templates; English needs no catalog.
"""

from __future__ import annotations

import gettext
import io
from contextvars import ContextVar
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency

LANGUAGES: Final = ("id", "en")
LANGUAGE_NAMES: Final = {"id": "Bahasa Indonesia", "en": "English"}
LOCALE_DIR: Final = Path(__file__).parent / "locale"
#: Dates read by people in Jakarta, Hong Kong and Singapore alike: shown with their zone.
_LOCALES: Final = {"id": Locale.parse("id_ID"), "en": Locale.parse("en_GB")}

_current: ContextVar[str] = ContextVar("console_language", default="id")


def load_catalogs(directory: Path = LOCALE_DIR) -> dict[str, gettext.NullTranslations]:
    """Every language's messages, merged from all its .po files."""
    catalogs: dict[str, gettext.NullTranslations] = {"en": gettext.NullTranslations()}
    for language in LANGUAGES:
        files = sorted((directory / language / "LC_MESSAGES").glob("*.po"))
        if not files:
            continue
        merged: gettext.GNUTranslations | None = None
        for path in files:
            with path.open("rb") as po:
                catalog = read_po(po, locale=language)
            buffer = io.BytesIO()
            write_mo(buffer, catalog)
            buffer.seek(0)
            translations = gettext.GNUTranslations(buffer)
            if merged is None:
                merged = translations
            else:
                merged._catalog.update(translations._catalog)  # type: ignore[attr-defined]
        if merged is not None:
            catalogs[language] = merged
    return catalogs


class Translator:
    """Translates for the language of the request being served."""

    def __init__(self, catalogs: dict[str, gettext.NullTranslations]) -> None:
        self._catalogs = catalogs

    @staticmethod
    def use(language: str) -> None:
        """Serve the rest of this request in `language`."""
        _current.set(language if language in LANGUAGES else LANGUAGES[0])

    @staticmethod
    def language() -> str:
        """The language of this request."""
        return _current.get()

    def gettext(self, message: str) -> str:
        """`message` in this request's language."""
        return self._catalogs.get(_current.get(), self._catalogs["en"]).gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        """Singular or plural, in this request's language."""
        catalog = self._catalogs.get(_current.get(), self._catalogs["en"])
        return catalog.ngettext(singular, plural, n)


def pick_language(*candidates: str | None, accept_language: str | None = None) -> str:
    """The first supported language among the candidates, then the browser's."""
    for candidate in candidates:
        if candidate in LANGUAGES:
            return candidate
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return LANGUAGES[0]


def show_date(value: date | datetime | str | None) -> str:
    """A date as the person reads it, e.g. '31 Agu 2026' or '31 Aug 2026'."""
    if value in (None, ""):
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
        except ValueError:
            return str(value)
    assert isinstance(value, date)
    day = value.date() if isinstance(value, datetime) else value
    return format_date(day, format="medium", locale=_LOCALES[_current.get()])


def show_datetime(value: datetime | str | None) -> str:
    """A moment as the person reads it, in UTC (said so)."""
    if value in (None, ""):
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    assert isinstance(value, datetime)
    return (
        format_datetime(value, format="medium", tzinfo=UTC, locale=_LOCALES[_current.get()])
        + " UTC"
    )


def show_money(value: str | Decimal | None, currency: str | None) -> str:
    """An amount from its decimal string (never a float), e.g. 'HK$12.000,00'."""
    if value in (None, "") or not currency:
        return ""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return f"{value} {currency}"
    return format_currency(amount, currency, locale=_LOCALES[_current.get()])
