"""Catalogues: every visible text has a zh-CN translation; locale choice; formats."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from lobbywatch.server.i18n import (
    Translator,
    catalogue,
    catalogue_json,
    extract,
    negotiate,
    normalise,
    validate_locale,
)

PLACEHOLDER = re.compile(r"\{(\w+)\}")


def test_every_visible_text_has_a_chinese_translation() -> None:
    found = extract()
    # the extraction sees all three kinds of source (a broken extractor finds nothing)
    places = {w.split(":")[0] for ws in found.values() for w in ws}
    for src in ("alert_texts.py", "report.py", "static/board.js", "static/branch.js"):
        assert src in places, src
    assert "static/board.html" in places and "static/branch.html" in places
    zh = catalogue("zh_CN")
    missing = sorted(k for k in found if not zh.get(k))
    assert missing == [], f"no zh-CN translation (run python -m lobbywatch.server.i18n): {missing}"
    lost = {
        k: zh[k] for k in found if set(PLACEHOLDER.findall(k)) != set(PLACEHOLDER.findall(zh[k]))
    }
    assert lost == {}, f"translations that drop or add placeholders: {lost}"


def test_html_pages_have_no_untranslatable_text() -> None:
    """Every text node of the board pages sits in an element with data-i18n."""
    from html.parser import HTMLParser

    from lobbywatch.server.i18n import HTML_SOURCES, SOURCE_DIR

    class Texts(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[tuple[str, bool]] = []
            self.bad: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag not in ("meta", "link", "input", "br", "img"):
                self.stack.append((tag, any(k == "data-i18n" for k, _ in attrs)))

        def handle_endtag(self, tag: str) -> None:
            if self.stack and self.stack[-1][0] == tag:
                self.stack.pop()

        def handle_data(self, data: str) -> None:
            text = data.strip()
            inside = [t for t, _ in self.stack]
            if (
                not any(ch.isalpha() for ch in text)
                or "script" in inside
                or "style" in inside
                or "noscript" in inside
            ):
                return
            if not (self.stack and self.stack[-1][1]):
                self.bad.append(text)

    for name in HTML_SOURCES:
        p = Texts()
        p.feed((SOURCE_DIR / name).read_text())
        assert p.bad == [], (name, p.bad)


def test_a_missing_translation_is_caught(tmp_path, monkeypatch) -> None:
    """The check above fails for a new text nobody translated."""
    import lobbywatch.server.i18n as i18n

    js = tmp_path / "static"
    js.mkdir()
    (js / "new.js").write_text('t("A brand new label");\n')
    monkeypatch.setattr(i18n, "SOURCE_DIR", tmp_path)
    monkeypatch.setattr(i18n, "PY_SOURCES", ())
    monkeypatch.setattr(i18n, "JS_SOURCES", ("static/new.js",))
    monkeypatch.setattr(i18n, "HTML_SOURCES", ())
    found = i18n.extract()
    assert list(found) == ["A brand new label"]
    assert "A brand new label" not in catalogue("zh_CN")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh_CN"),
        ("en-US,en;q=0.9", "en"),
        ("fr-FR, zh;q=0.5", "zh_CN"),
        ("zh-TW", "zh_CN"),
        ("fr", "en"),
        ("", "en"),
        (None, "en"),
        ("en;q=0.1, zh-Hans-CN;q=0.9", "zh_CN"),
        ("garbage;;;,", "en"),
    ],
)
def test_negotiate_accept_language(header: str | None, expected: str) -> None:
    assert negotiate(header) == expected


def test_normalise_and_validate() -> None:
    assert normalise("zh-cn") == "zh_CN"
    assert normalise("en-GB") == "en"
    assert normalise("xx-??") == "en"
    assert validate_locale("zh-CN") == "zh_CN"
    with pytest.raises(ValueError, match="no catalogue for locale 'fr'"):
        validate_locale("fr")
    with pytest.raises(ValueError, match="unknown locale"):
        validate_locale("not a locale")


def test_formats_follow_the_locale() -> None:
    en, zh = Translator("en"), Translator("zh_CN")
    assert en.wait(577) == "9 min 37 s"
    assert zh.wait(577) == "9分37秒"
    assert en.wait(42) == "42 s" and zh.wait(42) == "42秒"
    assert en.wait(None) == "—"
    assert en.number(12345.678, 1) == "12,345.7"
    assert en.percent(0.873) == "87%"
    assert zh.percent(0.873) == "87%"
    assert en.duration(25 * 60) == "25 minutes"
    assert zh.duration(25 * 60) == "25分钟"
    # branch clock, with the date when not today there
    at = datetime(2026, 11, 28, 6, 5, tzinfo=UTC).timestamp()
    same_day = at + 3600
    assert en.time(at, "Asia/Shanghai", same_day) == "14:05 CST"
    assert en.time(at, "Asia/Shanghai", at + 86400) == "Nov 28, 14:05 CST"
    assert zh.time(at, "Asia/Shanghai", at + 86400) == "11月28日 14:05 CST"
    assert en.time(at, "UTC", same_day) == "06:05 UTC"


def test_catalogue_json_for_the_board() -> None:
    cat = catalogue_json("zh-CN")
    assert cat["locale"] == "zh-CN"
    assert cat["messages"]["Lobby board"] == "大堂看板"
    assert catalogue_json("en")["locale"] == "en"
