"""Hashed credentials shared by the collector's HTTP server and the edge's /metrics.

One credential a line, ``<name> <role> scrypt$N$r$p$salt$key``; only the scrypt hash
of each secret is stored (``hashlib.scrypt``, RFC 7914: memory-hard, standard
library). ``lobbywatch server add-credential`` writes such files.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from lobbywatch.errors import ConfigError

ROLES = ("read", "metrics", "admin")
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$key`` (base64) of ``secret``."""
    salt = salt or secrets.token_bytes(16)
    key = hashlib.scrypt(
        secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(key).decode()}"


def verify_secret(secret: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(key)
        got = hashlib.scrypt(
            secret.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(want),
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(got, want)


@dataclass(frozen=True, slots=True)
class Credential:
    name: str
    role: str
    hash: str


def load_credentials(path: Path, field: str = "http.credentials_file") -> dict[str, Credential]:
    """Parse a credentials file; ConfigError naming ``field`` and the line on a bad one."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{field}: cannot read {path}: {exc}") from exc
    out: dict[str, Credential] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3 or parts[1] not in ROLES or not parts[2].startswith("scrypt$"):
            raise ConfigError(
                f"{field} {path} line {n}: expected '<name> <role> scrypt$...' "
                f"with role one of {', '.join(ROLES)}"
            )
        out[parts[0]] = Credential(parts[0], parts[1], parts[2])
    return out


class Verifier:
    """Checks ``Authorization`` headers (Bearer ``<name>.<secret>`` or Basic) against
    credentials, remembering verified secrets: scrypt costs ~50 ms and a scraper
    presents the same secret every few seconds."""

    def __init__(self, credentials: dict[str, Credential]) -> None:
        self.credentials = credentials
        self._verified: dict[bytes, str] = {}
        self._lock = threading.Lock()

    def check(self, name: str, secret: str) -> Credential | None:
        cred = self.credentials.get(name)
        if cred is None:
            return None
        digest = hashlib.sha256(f"{name}\0{secret}".encode()).digest()
        with self._lock:
            if self._verified.get(digest) == cred.hash:
                return cred
        if not verify_secret(secret, cred.hash):
            return None
        with self._lock:
            if len(self._verified) > 1000:
                self._verified.clear()
            self._verified[digest] = cred.hash
        return cred

    def from_authorization(self, authorization: str | None) -> Credential | None:
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and "." in value:
            name, _, secret = value.strip().partition(".")
            return self.check(name, secret)
        if scheme == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            name, _, secret = decoded.partition(":")
            return self.check(name, secret)
        return None
