"""The lobby board: a status page for branches without Grafana.

Plain HTML, CSS and vanilla JavaScript from ``server/static/`` (package data),
no build step and nothing fetched from anywhere but the collector itself: the
page polls the collector's JSON API (``/api/v1/branches`` and one
``/api/v1/branches/{id}`` per branch) every 2 s. :func:`install_board` adds it
to the app that ``lobbywatch.server.api.create_app`` returns:

* ``GET /board/`` the page (``/board`` and ``/`` redirect to it),
* ``GET /board/assets/...`` its script and style sheet.

The page's Content-Security-Policy allows only same-origin scripts, styles and
requests, so a board left open on a branch screen can never reach out.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def install_board(app: FastAPI, path: str = "/board") -> None:
    """Serve the board under ``path`` on ``app`` (and redirect ``/`` to it if free)."""
    path = "/" + path.strip("/")
    page = STATIC_DIR / "board.html"
    if not page.is_file():
        raise FileNotFoundError(f"{page} is missing (server/static is package data)")

    app.mount(f"{path}/assets", StaticFiles(directory=STATIC_DIR), name="board-assets")

    @app.get(f"{path}/", include_in_schema=False)
    def board_page() -> FileResponse:
        return FileResponse(
            page,
            media_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"},
        )

    @app.get(path, include_in_schema=False)
    def board_redirect() -> RedirectResponse:
        return RedirectResponse(f"{path}/", status_code=307)

    taken = {getattr(r, "path", None) for r in app.routes}
    if "/" not in taken:

        @app.get("/", include_in_schema=False)
        def root_redirect() -> RedirectResponse:
            return RedirectResponse(f"{path}/", status_code=307)
