"""SMS templates: data files per language, checked when the service starts.

A template may use only known placeholders, must stay within two SMS parts with the
longest reference, and (for the shipped templates) must stay in GSM-7.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Final

from lintas_notify.domain.encoding import is_gsm7, normalise_typography, sms_cost

PLACEHOLDERS: Final = frozenset({"reference"})
#: The longest value each placeholder can take, for the length check.
LONGEST_VALUES: Final = {"reference": "LB-WWWWWWWW"}
MAX_SEGMENTS: Final = 2


class TemplateError(ValueError):
    """A template file is broken; the message names the language, template and problem."""


@dataclass(frozen=True)
class TemplateCatalogue:
    """All templates, by language then template name."""

    templates: Mapping[str, Mapping[str, str]]
    default_language: str

    def render(self, name: str, language: str, **values: str) -> tuple[str, str]:
        """The text in the worker's language (or the default one) and the language used."""
        lang = language if name in self.templates.get(language, {}) else self.default_language
        text = self.templates[lang][name].format(**values)
        return normalise_typography(text), lang


def _check(language: str, name: str, text: str, warnings: list[str]) -> None:
    fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    unknown = fields - PLACEHOLDERS
    if unknown:
        raise TemplateError(f"{language}/{name}: unknown placeholder(s) {sorted(unknown)}")
    rendered = normalise_typography(text.format(**LONGEST_VALUES))
    cost = sms_cost(rendered)
    if cost.segments > MAX_SEGMENTS:
        raise TemplateError(
            f"{language}/{name}: {cost.segments} SMS parts with the longest "
            f"reference; at most {MAX_SEGMENTS}"
        )
    if not is_gsm7(rendered):
        warnings.append(f"{language}/{name} leaves GSM-7 (sent as UCS-2)")


def load_catalogue(
    default_language: str = "en", files: Mapping[str, str] | None = None
) -> tuple[TemplateCatalogue, list[str]]:
    """Load and check the templates; returns the catalogue and any GSM-7 warnings.

    `files` maps a language to TOML text; by default the files shipped in
    `lintas_notify/templates/<language>.toml` are read.
    """
    if files is None:
        folder = resources.files("lintas_notify") / "templates"
        files = {
            p.name.removesuffix(".toml"): p.read_text(encoding="utf-8")
            for p in folder.iterdir()
            if p.name.endswith(".toml")
        }
    catalogue: dict[str, dict[str, str]] = {}
    warnings: list[str] = []
    for language, source in sorted(files.items()):
        try:
            data = tomllib.loads(source)
        except tomllib.TOMLDecodeError as exc:
            raise TemplateError(f"{language}: not valid TOML: {exc}") from None
        catalogue[language] = {}
        for name, entry in data.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
                raise TemplateError(f"{language}/{name}: needs a 'text' string")
            _check(language, name, entry["text"], warnings)
            catalogue[language][name] = entry["text"]
    if default_language not in catalogue:
        raise TemplateError(f"default language {default_language!r} has no templates")
    return TemplateCatalogue(catalogue, default_language), warnings
