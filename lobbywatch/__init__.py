"""lobbywatch: camera-based queue monitoring for bank branches.

Subpackages:
    lobbywatch.edge    people counting on the branch's edge box (folder ``edge/``)
    lobbywatch.server  the central collector (folder ``server/``)
    lobbywatch.models  model catalogue and weight resolution (folder ``models/``)
    lobbywatch.protocol  the MQTT contract shared by both sides
    lobbywatch.zone_state  the zone vocabulary of that contract (ZoneKind, field set)
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lobbywatch")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
