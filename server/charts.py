"""Day charts for the branch page (SVG) and the daily report (PNG), drawn by Matplotlib.

Matplotlib renders on the server, so the board ships no charting script and mail
clients get plain PNG images. The charts carry no words (only hours and values):
titles, legends and units are in the page around them, in the reader's language,
so no CJK font is needed on the server. The figure API is used directly (no
pyplot global state), which is safe from the API's worker threads.

Colours: the day's line in a strong colour, the typical day (same weekday, earlier
weeks) as a faint band, the W1 threshold as a dashed red line.
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.figure import Figure

#: chart name -> (series keys drawn as lines, band series, y scale factor, show threshold)
CHARTS: dict[str, tuple[tuple[str, ...], str | None, float, bool]] = {
    "queue": (("queue_length_avg",), "queue_length_avg", 1.0, False),
    "wait": (("predicted_wait_s_avg", "realised_wait_p50_s"), "predicted_wait_s_avg", 1 / 60, True),
    "service": (("served_within_threshold_ratio",), "served_within_threshold_ratio", 100.0, False),
    "walkouts": (("walk_outs",), "walk_outs", 1.0, False),
    "counters": (("counters_open",), "counters_open", 1.0, False),
}
LINE_COLOURS = ("#1f5fa8", "#2e8b57")
LINE_STYLES = ("-", ":")
#: per-minute ratios jump between 0 and 1 with one or two customers served: the
#: service-level line is drawn as 15-minute means
SMOOTH_S = {"service": 900}
BAND_COLOUR = "#1f5fa8"
THRESHOLD_COLOUR = "#b3261e"


def _smoothed(
    t: list[float], values: list[float | None], bucket_s: float | None
) -> tuple[list[float], list[float | None]]:
    """Means of the non-missing values per ``bucket_s`` (unchanged when None)."""
    if not bucket_s:
        return t, values
    sums: dict[int, list[float]] = {}
    for x, v in zip(t, values, strict=True):
        if v is not None:
            sums.setdefault(int(x // bucket_s), []).append(v)
    keys = sorted(sums)
    return [k * bucket_s + bucket_s / 2 for k in keys], [sum(sums[k]) / len(sums[k]) for k in keys]


def has_data(series: dict[str, Any], chart: str) -> bool:
    """True when the day has at least one value for one of the chart's lines."""
    keys, _, _, _ = CHARTS[chart]
    return any(series.get(k) and any(v is not None for v in series[k]) for k in keys)


def render(series: dict[str, Any], chart: str, fmt: str = "svg", size=(6.4, 2.2)) -> bytes:
    """One chart of one zone's day (:func:`board_data.day_series` output) as SVG or PNG.

    Raises:
        KeyError: unknown chart name.
        ValueError: unknown format.
    """
    if chart not in CHARTS:
        raise KeyError(f"unknown chart {chart!r} (known: {', '.join(CHARTS)})")
    if fmt not in ("svg", "png"):
        raise ValueError(f"unknown image format {fmt!r} (svg or png)")
    keys, band_key, scale, threshold = CHARTS[chart]
    fig = Figure(figsize=size, dpi=100)
    ax = fig.add_subplot()
    band = (series.get("band") or {}).get(band_key) if band_key else None
    if band:
        hours = [t / 3600 for t in band["t"]]
        ax.fill_between(
            hours,
            [v * scale for v in band["lo"]],
            [v * scale for v in band["hi"]],
            step="post",
            color=BAND_COLOUR,
            alpha=0.22,
            linewidth=0,
        )
    raw_t = list(series.get("t", []))
    for colour, style, key in zip(LINE_COLOURS, LINE_STYLES, keys, strict=False):
        values = series.get(key)
        if not values:
            continue
        t, ys = _smoothed(raw_t, values, SMOOTH_S.get(chart))
        ax.plot(
            [x / 3600 for x in t],
            [v * scale if v is not None else float("nan") for v in ys],
            color=colour,
            linestyle=style,
            linewidth=1.6 if style == "-" else 1.3,
        )
    thr = series.get("threshold_s")
    if threshold and thr:
        ax.axhline(thr * scale, color=THRESHOLD_COLOUR, linestyle="--", linewidth=1.2)
    ax.set_xlim(0, 24)
    ax.set_xticks(range(0, 25, 3))
    ax.set_ylim(bottom=0)
    if chart == "service":
        ax.set_ylim(0, 105)
    ax.grid(True, color="#dddddd", linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout(pad=0.4)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()
