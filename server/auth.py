"""Who may read the collector's HTTP API, board and metrics.

Credentials live in a file (``http.credentials_file``), one per line::

    # name   role     hash
    board    read     scrypt$16384$8$1$<salt, base64>$<key, base64>
    prom     metrics  scrypt$16384$8$1$...

Only the scrypt hash of each secret is stored (``hashlib.scrypt``, RFC 7914, from
the standard library: memory-hard, no extra dependency). ``lobbywatch server
add-credential`` appends a line and prints the secret once.

Roles: ``read`` (API, board, ``/docs`` and ``/metrics``), ``metrics`` (``/metrics``
only, for Prometheus), ``admin`` (everything; the API has no writes yet).
``/healthz`` and the login page are open.

A request authenticates with one of:

* ``Authorization: Bearer <name>.<secret>`` (API clients, Prometheus
  ``authorization: {credentials_file}``),
* ``Authorization: Basic`` with name and secret (Prometheus ``basic_auth``),
* the board's session cookie, set by ``POST /login`` (a form: the token never
  appears in a URL, so never in a log). The cookie is signed and expiring
  (itsdangerous), ``HttpOnly``, ``SameSite=Strict`` (a cross-site page cannot make
  the browser send it, which with a read-only API is the CSRF defence), ``Secure``
  with ``http.cookie_secure``. ``POST /login`` and ``POST /logout`` also require a
  same-origin ``Origin`` (or ``Referer``) header.

The ``Host`` header is checked against the configured names
(``http.allowed_hosts`` plus loopback names and the bind address) so a DNS
rebinding page cannot talk to a collector on a trusted network.
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware

from lobbywatch.credentials import (
    ROLES,
    Credential,
    Verifier,
    hash_secret,
    load_credentials,
)
from lobbywatch.errors import ConfigError

COOKIE = "lw_session"
#: paths anyone may reach
PUBLIC = ("/healthz", "/login", "/logout")
#: roles that may reach /metrics, and everything else
_METRICS_ROLES = frozenset({"metrics", "read", "admin"})
_READ_ROLES = frozenset({"read", "admin"})


def add_credential(path: Path, name: str, role: str) -> str:
    """Append a new credential to ``path`` (0600) and return its secret (shown once)."""
    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not name or any(c.isspace() for c in name) or "." in name or ":" in name:
        raise ConfigError(f"credential name {name!r} must have no spaces, dots or colons")
    if path.exists() and name in load_credentials(path):
        raise ConfigError(f"{path} already has a credential named {name!r}")
    secret = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", encoding="utf-8") as f:
        if new:
            path.chmod(0o600)
        f.write(f"{name} {role} {hash_secret(secret)}\n")
    return secret


class Authenticator(Verifier):
    """Checks credentials (bearer, basic: :class:`Verifier`) and issues/reads board
    session cookies."""

    def __init__(
        self,
        credentials: dict[str, Credential],
        session_secret: bytes,
        *,
        cookie_secure: bool = False,
        session_max_age_s: int = 12 * 3600,
    ) -> None:
        from itsdangerous import URLSafeTimedSerializer

        super().__init__(credentials)
        self.cookie_secure = cookie_secure
        self.max_age = session_max_age_s
        self._sessions = URLSafeTimedSerializer(session_secret, salt="lobbywatch-board")

    def from_headers(self, authorization: str | None, cookie: str | None) -> Credential | None:
        if authorization:
            return self.from_authorization(authorization)
        if cookie:
            return self.session(cookie)
        return None

    def issue(self, cred: Credential) -> str:
        return self._sessions.dumps({"u": cred.name})

    def session(self, value: str) -> Credential | None:
        from itsdangerous import BadSignature

        try:
            data = self._sessions.loads(value, max_age=self.max_age)
        except BadSignature:
            return None
        name = data.get("u") if isinstance(data, dict) else None
        return self.credentials.get(name) if isinstance(name, str) else None


def allowed(role: str, path: str) -> bool:
    if path == "/metrics":
        return role in _METRICS_ROLES
    return role in _READ_ROLES


LOGIN_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


def login_page(error: str | None = None) -> str:
    msg = f'<p role="alert" id="error">{html.escape(error)}</p>' if error else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width'><title>lobbywatch: sign in</title>"
        "<style>body{font:16px system-ui;max-width:22em;margin:4em auto}label,input,button"
        "{display:block;width:100%;margin:.3em 0}input{padding:.4em}</style></head><body>"
        "<h1>lobbywatch</h1>"
        f"{msg}"
        "<form method=post action=/login>"
        "<label for=user>User</label><input id=user name=user autocomplete=username required>"
        "<label for=password>Password</label>"
        "<input id=password name=password type=password autocomplete=current-password required>"
        "<button type=submit id=signin>Sign in</button></form></body></html>"
    )


def same_origin(origin: str | None, referer: str | None, host: str | None) -> bool:
    """A POST's ``Origin`` (or, failing that, ``Referer``) names this very host."""
    source = origin or referer
    if not source or not host:
        return False
    return urlsplit(source).netloc == host


def install_auth(
    app: object,
    auth: Authenticator | None,
    allowed_hosts: Iterable[str],
) -> None:
    """Host check on every request; with ``auth``, credentials on all but PUBLIC paths."""
    assert isinstance(app, FastAPI)
    hosts = sorted(set(allowed_hosts))

    if auth is not None:
        authn = auth

        @app.middleware("http")
        async def require_credentials(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            path = request.url.path
            if path in PUBLIC:
                return await call_next(request)
            cred = authn.from_headers(
                request.headers.get("authorization"), request.cookies.get(COOKIE)
            )
            if cred is None:
                if path.startswith("/board") or path == "/":
                    return RedirectResponse("/login", status_code=303)
                return JSONResponse(
                    {"detail": "authentication required"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="lobbywatch", Basic'},
                )
            if not allowed(cred.role, path):
                return JSONResponse(
                    {"detail": f"role {cred.role!r} may not read {path}"}, status_code=403
                )
            return await call_next(request)

        @app.get("/login", include_in_schema=False)
        def login_form() -> HTMLResponse:
            return HTMLResponse(login_page(), headers={"Content-Security-Policy": LOGIN_CSP})

        @app.post("/login", include_in_schema=False)
        async def login(request: Request) -> Response:
            if not same_origin(
                request.headers.get("origin"),
                request.headers.get("referer"),
                request.headers.get("host"),
            ):
                return JSONResponse({"detail": "cross-origin login refused"}, status_code=403)
            body = (await request.body())[:4096].decode(errors="replace")
            form = parse_qs(body)
            user = (form.get("user") or [""])[0]
            password = (form.get("password") or [""])[0]
            cred = authn.check(user, password)
            if cred is None or not allowed(cred.role, "/board/"):
                return HTMLResponse(
                    login_page("Unknown user or wrong password."),
                    status_code=401,
                    headers={"Content-Security-Policy": LOGIN_CSP},
                )
            resp = RedirectResponse("/board/", status_code=303)
            resp.set_cookie(
                COOKIE,
                authn.issue(cred),
                max_age=authn.max_age,
                httponly=True,
                samesite="strict",
                secure=authn.cookie_secure,
                path="/",
            )
            return resp

        @app.post("/logout", include_in_schema=False)
        def logout(request: Request) -> Response:
            if not same_origin(
                request.headers.get("origin"),
                request.headers.get("referer"),
                request.headers.get("host"),
            ):
                return JSONResponse({"detail": "cross-origin logout refused"}, status_code=403)
            resp = RedirectResponse("/login", status_code=303)
            resp.delete_cookie(COOKIE, path="/")
            return resp

    # added last = outermost: a wrong Host is refused before anything else runs
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
