"""SMS templates: data files per language, checked when the service starts.

Each `templates/<language>.toml` holds one table per template (`text = "..."`) and a
`[words]` table that gives the language's words for coded values (`country.HK`,
`outcome.settled`, `stage.with_lawyer`). A template may use only known placeholders,
must stay within two SMS parts with the longest value of every placeholder, and (for the
shipped templates) must stay in GSM-7. Adding a language is adding one file.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Final

from lintas_notify.domain.encoding import is_gsm7, normalise_typography, sms_cost

#: Placeholders filled with the value as given.
LITERAL_PLACEHOLDERS: Final = frozenset({"reference", "deadline"})
#: Placeholders whose value is a code looked up in the language's [words] table.
WORD_PLACEHOLDERS: Final = frozenset({"country", "outcome", "stage"})
PLACEHOLDERS: Final = LITERAL_PLACEHOLDERS | WORD_PLACEHOLDERS
#: The longest value each literal placeholder can take, for the length check.
LONGEST_VALUES: Final = {"reference": "LB-WWWWWWWW", "deadline": "30-12-2026"}
MAX_SEGMENTS: Final = 2
WORDS_TABLE: Final = "words"


class TemplateError(ValueError):
    """A template file is broken; the message names the language, template and problem."""


@dataclass(frozen=True)
class TemplateCatalogue:
    """All templates and words, by language then name."""

    templates: Mapping[str, Mapping[str, str]]
    default_language: str
    words: Mapping[str, Mapping[str, str]]

    def language_for(self, name: str, language: str) -> str:
        """The language a template is rendered in: the worker's, else the default."""
        return language if name in self.templates.get(language, {}) else self.default_language

    def word(self, language: str, placeholder: str, code: str) -> str:
        """The word for a coded value (`country`, `HK`), or the placeholder's `other` word."""
        words = self.words.get(language, {})
        found = words.get(f"{placeholder}.{code}") or words.get(f"{placeholder}.other")
        if found is None:
            raise TemplateError(f"{language}: no word for {placeholder}.{code}")
        return found

    def render(self, name: str, language: str, **values: str) -> tuple[str, str]:
        """The text in the worker's language (or the default one) and the language used.

        Values of `country`, `outcome` and `stage` are codes, translated through [words].
        """
        lang = self.language_for(name, language)
        filled = {
            key: self.word(lang, key, value) if key in WORD_PLACEHOLDERS else value
            for key, value in values.items()
        }
        text = self.templates[lang][name].format(**filled)
        return normalise_typography(text), lang


def _placeholders(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}


def _longest_values(language: str, words: Mapping[str, str]) -> dict[str, str]:
    longest = dict(LONGEST_VALUES)
    for placeholder in WORD_PLACEHOLDERS:
        candidates = [w for k, w in words.items() if k.startswith(f"{placeholder}.")]
        longest[placeholder] = max(candidates, key=lambda w: sms_cost(w).units, default="")
    return longest


def _check(
    language: str, name: str, text: str, words: Mapping[str, str], warnings: list[str]
) -> None:
    used = _placeholders(text)
    unknown = used - PLACEHOLDERS
    if unknown:
        raise TemplateError(f"{language}/{name}: unknown placeholder(s) {sorted(unknown)}")
    for placeholder in used & WORD_PLACEHOLDERS:
        if not any(k.startswith(f"{placeholder}.") for k in words):
            raise TemplateError(f"{language}/{name}: no [words] for {{{placeholder}}}")
    rendered = normalise_typography(text.format(**_longest_values(language, words)))
    cost = sms_cost(rendered)
    if cost.segments > MAX_SEGMENTS:
        raise TemplateError(
            f"{language}/{name}: {cost.segments} SMS parts with the longest "
            f"values; at most {MAX_SEGMENTS}"
        )
    if not is_gsm7(rendered):
        warnings.append(f"{language}/{name} leaves GSM-7 (sent as UCS-2)")


def _shipped_files() -> dict[str, str]:
    folder = resources.files("lintas_notify") / "templates"
    return {
        p.name.removesuffix(".toml"): p.read_text(encoding="utf-8")
        for p in folder.iterdir()
        if p.name.endswith(".toml")
    }


def load_catalogue(
    default_language: str = "en", files: Mapping[str, str] | None = None
) -> tuple[TemplateCatalogue, list[str]]:
    """Load and check the templates; returns the catalogue and any GSM-7 warnings.

    `files` maps a language to TOML text; by default the files shipped in
    `lintas_notify/templates/<language>.toml` are read.
    """
    files = _shipped_files() if files is None else files
    catalogue: dict[str, dict[str, str]] = {}
    all_words: dict[str, dict[str, str]] = {}
    warnings: list[str] = []
    for language, source in sorted(files.items()):
        try:
            data = tomllib.loads(source)
        except tomllib.TOMLDecodeError as exc:
            raise TemplateError(f"{language}: not valid TOML: {exc}") from None
        words = data.pop(WORDS_TABLE, {})
        if not isinstance(words, dict) or not all(isinstance(w, str) for w in words.values()):
            raise TemplateError(f"{language}/[{WORDS_TABLE}]: must map names to strings")
        all_words[language] = {k: normalise_typography(w) for k, w in words.items()}
        for word_key, word in all_words[language].items():
            if not is_gsm7(word):
                warnings.append(f"{language}/[{WORDS_TABLE}].{word_key} leaves GSM-7")
        catalogue[language] = {}
        for name, entry in data.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
                raise TemplateError(f"{language}/{name}: needs a 'text' string")
            _check(language, name, entry["text"], all_words[language], warnings)
            catalogue[language][name] = entry["text"]
    if default_language not in catalogue:
        raise TemplateError(f"default language {default_language!r} has no templates")
    return TemplateCatalogue(catalogue, default_language, all_words), warnings
