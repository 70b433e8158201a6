"""Translations and locale-aware formats for what managers read (board, reports, notifications).

One gettext catalogue per language in ``server/locale/<locale>.po``
(English is the source language: its msgids are the English texts, so an empty
English msgstr falls back to the id as gettext does). The ``.po`` files are read
with Babel at first use, so there is no compile step and no ``.mo`` in git; the
board's JavaScript gets the same catalogue as JSON (:func:`catalogue_json`).

Texts use ``str.format`` placeholders (``"{branch}: {wait} against {threshold}"``)
so a translation may reorder them; ``tests/test_i18n.py`` fails when a visible string
(Python ``gettext``/``ngettext`` calls, board ``t(...)`` calls and ``data-i18n``
attributes) has no zh-CN translation or a translation loses a placeholder.

Numbers, percentages, dates and times follow the locale through Babel (CLDR data);
times are shown in the branch's own time zone, with the date when it is not today
there.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.core import UnknownLocaleError, negotiate_locale
from babel.dates import format_date, format_skeleton, format_time, format_timedelta
from babel.numbers import format_decimal, format_percent

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "lobbywatch"
#: languages with a catalogue (gettext form: language_TERRITORY)
LOCALES = ("en", "zh_CN")
DEFAULT_LOCALE = "en"


def normalise(tag: str | None) -> str:
    """``zh-cn``, ``zh_Hans_CN``, ``zh`` -> ``zh_CN``; ``en-GB`` -> ``en``; unknown -> ``en``.

    Raises nothing: an unknown or malformed tag falls back to the default, because
    a browser's language list is untrusted input.
    """
    if not tag:
        return DEFAULT_LOCALE
    try:
        loc = Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return DEFAULT_LOCALE
    if loc.language == "zh":
        return "zh_CN"
    return loc.language if loc.language in LOCALES else DEFAULT_LOCALE


def validate_locale(tag: str) -> str:
    """Config-side check: the tag must name a language with a catalogue.

    Raises:
        ValueError: naming the tag and the supported ones.
    """
    try:
        loc = Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        raise ValueError(f"unknown locale {tag!r} (supported: en, zh-CN)") from None
    if loc.language not in {"en", "zh"}:
        raise ValueError(f"no catalogue for locale {tag!r} (supported: en, zh-CN)")
    return "zh_CN" if loc.language == "zh" else "en"


_QUALITY = re.compile(r"^\s*([A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q=([0-9.]+))?\s*$")


def negotiate(accept_language: str | None) -> str:
    """Pick the best catalogue for an ``Accept-Language`` header (RFC 9110 q-values)."""
    if not accept_language:
        return DEFAULT_LOCALE
    prefs: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")[:32]):
        m = _QUALITY.match(part)
        if not m or m.group(1) == "*":
            continue
        try:
            q = float(m.group(2)) if m.group(2) else 1.0
        except ValueError:
            continue
        if q > 0:
            prefs.append((-q, i, m.group(1).replace("-", "_")))
    ordered = [tag for _, _, tag in sorted(prefs)]
    # zh, zh_Hans, zh_TW... all read Simplified Chinese better than English here
    ordered = ["zh_CN" if t.lower().startswith("zh") else t for t in ordered]
    found = negotiate_locale(ordered, list(LOCALES), sep="_")
    return normalise(found) if found else DEFAULT_LOCALE


@functools.cache
def _messages(locale: str) -> dict[str | tuple[str, int], str]:
    """Translated, non-fuzzy entries of one catalogue: msgid (or (msgid, form)) -> text."""
    from babel.messages.pofile import read_po

    po = LOCALE_DIR / f"{locale}.po"
    if not po.is_file():
        raise FileNotFoundError(f"{po} is missing (server/locale is package data)")
    with po.open("rb") as f:
        catalog = read_po(f, locale=locale)
    out: dict[str | tuple[str, int], str] = {}
    for msg in catalog:
        if not msg.id or msg.fuzzy:
            continue
        if isinstance(msg.id, tuple | list):
            strings = msg.string if isinstance(msg.string, tuple | list) else (msg.string,)
            for n, text in enumerate(strings):
                if text:
                    out[(msg.id[0], n)] = text
        elif msg.string:
            out[msg.id] = str(msg.string)
    return out


def _plural_form(locale: str, n: int) -> int:
    # CLDR: Chinese has one form; English "one" for 1, "other" otherwise
    return 0 if locale == "zh_CN" else int(n != 1)


@functools.cache
def catalogue(locale: str) -> dict[str, str]:
    """msgid -> translation for one locale (plural entries keyed by their singular id)."""
    out: dict[str, str] = {}
    for key, value in _messages(normalise(locale)).items():
        if isinstance(key, tuple):
            if key[1] == 0:
                out[key[0]] = value
        else:
            out[key] = value
    return out


def catalogue_json(locale: str) -> dict[str, Any]:
    """What the board's script loads: the locale tag (BCP 47) and its messages."""
    loc = normalise(locale)
    return {"locale": loc.replace("_", "-"), "messages": catalogue(loc)}


@dataclass(frozen=True)
class Translator:
    """Texts and formats of one locale. ``locale`` is a catalogue name from :data:`LOCALES`."""

    locale: str = DEFAULT_LOCALE

    @classmethod
    def of(cls, tag: str | None) -> Translator:
        return cls(normalise(tag))

    @property
    def babel_locale(self) -> Locale:
        return Locale.parse(self.locale)

    def gettext(self, msgid: str, **kw: Any) -> str:
        """Translate ``msgid`` and fill its ``{placeholders}`` from ``kw``."""
        text = _messages(self.locale).get(msgid, msgid)
        return text.format(**kw) if kw else text

    def ngettext(self, singular: str, plural: str, n: int, **kw: Any) -> str:
        form = _plural_form(self.locale, n)
        default = singular if form == 0 and self.locale != "zh_CN" else plural
        text = _messages(self.locale).get((singular, form), default)
        return text.format(n=n, **kw)

    # ----------------------------------------------------------------- formats
    def number(self, value: float, digits: int = 0) -> str:
        fmt = "#,##0" + ("." + "0" * digits if digits else "")
        return format_decimal(value, format=fmt, locale=self.locale)

    def percent(self, ratio: float) -> str:
        return format_percent(ratio, format="#,##0%", locale=self.locale)

    def wait(self, seconds: float | None) -> str:
        """A wait to the second: ``9 min 37 s`` / ``9分37秒``; ``—`` when unknown."""
        if seconds is None:
            return "—"
        total = max(0, round(seconds))
        m, s = divmod(total, 60)
        if m == 0:
            return self.gettext("{s} s", s=s)
        secs = str(s).zfill(2)
        return self.gettext("{m} min {s} s", m=self.number(m), s=secs)

    def duration(self, seconds: float) -> str:
        """A coarse duration (``25 minutes``, ``1 hour`` / ``25分钟``) from CLDR."""
        return format_timedelta(
            timedelta(seconds=seconds), threshold=1.5, format="long", locale=self.locale
        )

    def time(self, ts: float, tz: str, now: float) -> str:
        """Local wall time at the branch: ``14:05`` today, ``28 Nov, 14:05`` on another day.

        The zone abbreviation is appended (``14:05 CST``) so a reader in another
        time zone knows whose clock it is.
        """
        zone = ZoneInfo(tz)
        at = datetime.fromtimestamp(ts, zone)
        today = datetime.fromtimestamp(now, zone).date()
        clock = format_time(at, format="HH:mm", locale=self.locale)
        abbrev = at.tzname() or tz
        stamp = clock + " " + abbrev
        if at.date() == today:
            return stamp
        day = format_skeleton("MMMd", at, locale=self.locale)
        return self.gettext("{day}, {time}", day=day, time=stamp)

    def date(self, ts: float, tz: str) -> str:
        at = datetime.fromtimestamp(ts, ZoneInfo(tz))
        return format_date(at.date(), format="long", locale=self.locale)


# ------------------------------------------------------------ catalogue upkeep
#: sources of visible texts: Python modules (gettext/ngettext calls), board scripts
#: (t(...) and N_(...) calls) and board pages (data-i18n* attributes)
SOURCE_DIR = Path(__file__).resolve().parent
PY_SOURCES = ("alert_texts.py", "i18n.py", "report.py", "report_schedule.py", "board.py")
JS_SOURCES = ("static/board.js", "static/branch.js", "static/i18n.js")
HTML_SOURCES = ("static/board.html", "static/branch.html")


def extract() -> dict[str, list[str]]:
    """Every visible msgid in the sources -> where it is used (``file:line``)."""
    from html.parser import HTMLParser

    from babel.messages.extract import extract_from_file

    found: dict[str, list[str]] = {}

    def add(msgid: str | tuple[str, ...], where: str) -> None:
        key = msgid[0] if isinstance(msgid, tuple) else msgid
        if key:
            found.setdefault(key, []).append(where)

    for name in PY_SOURCES:
        path = SOURCE_DIR / name
        if path.is_file():
            for line, msg, _c, _ctx in extract_from_file(
                "python", path, keywords={"gettext": None, "ngettext": (1, 2), "g": None}
            ):
                add(msg, f"{name}:{line}")
    for name in JS_SOURCES:
        for line, msg, _c, _ctx in extract_from_file(
            "javascript", SOURCE_DIR / name, keywords={"t": None, "N_": None}
        ):
            add(msg, f"{name}:{line}")

    class _Attrs(HTMLParser):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            for k, v in attrs:
                if k in ("data-i18n", "data-i18n-placeholder", "data-i18n-label") and v:
                    add(v, f"{self.name}:{self.getpos()[0]}")

    for name in HTML_SOURCES:
        parser = _Attrs(name)
        parser.feed((SOURCE_DIR / name).read_text())
    return found


def update_catalogues() -> dict[str, int]:
    """Add new msgids to every catalogue (translations kept, obsolete ones dropped).

    Returns locale -> number of entries still without a translation.
    """
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import read_po, write_po

    found = extract()
    out = {}
    for loc in LOCALES:
        po = LOCALE_DIR / f"{loc}.po"
        old = None
        if po.is_file():
            with po.open("rb") as f:
                old = read_po(f, locale=loc)
        cat = Catalog(locale=loc, project="lobbywatch", domain=DOMAIN, fuzzy=False)
        if old is not None:  # keep the header dates: a refresh changes only what changed
            cat.creation_date = old.creation_date
            cat.revision_date = old.revision_date
        for msgid in sorted(found):
            prev = old.get(msgid) if old is not None else None
            cat.add(
                msgid,
                prev.string if prev is not None else "",
                locations=[(w.split(":")[0], int(w.split(":")[1])) for w in found[msgid]],
                flags=("python-brace-format",) if "{" in msgid else (),
            )
        po.parent.mkdir(parents=True, exist_ok=True)
        with po.open("wb") as f:
            write_po(f, cat, width=100, omit_header=False, sort_output=True)
        out[loc] = sum(1 for m in cat if m.id and not m.string)
    return out


if __name__ == "__main__":  # python -m lobbywatch.server.i18n: refresh the catalogues
    for loc, missing in update_catalogues().items():
        if loc != DEFAULT_LOCALE:  # English is the source language: msgids are the texts
            print(f"{loc}: {missing} untranslated")
