"""Shared zone vocabulary of the MQTT contract: what a zone is and which numbers it reports.

Both sides of the protocol import this module (the edge computes these values, the
collector stores and serves them); it imports neither ``edge`` nor ``server``, so the
collector does not depend on the edge package.

``ZONE_STATE_FIELDS`` is the one list of per-zone numbers that travel unchanged
from the edge pipeline (``edge.state.ZoneState``) through the MQTT payload
(``protocol.ZoneMessage``) into the collector (``server.state.ZoneRecord``) and out of
the API (``server.api.ZoneOut``). Each boundary copies exactly these names, so a new
field is added here and to the models that carry it; ``tests/test_zone_fields.py``
fails when one of them lacks a listed field or carries an unlisted one.
"""

from __future__ import annotations

from enum import StrEnum


class ZoneKind(StrEnum):
    """What a zone is for, in the branch's service blueprint."""

    WAITING = "waiting"
    CASH_COUNTER = "cash_counter"
    NON_CASH_COUNTER = "non_cash_counter"
    WEALTH_DESK = "wealth_desk"
    SELF_SERVICE = "self_service"
    CONSULTATION = "consultation"
    ENTRANCE = "entrance"

    @property
    def is_service_point(self) -> bool:
        """A place where staff serve customers (its occupancy says a counter is open)."""
        return self in {
            ZoneKind.CASH_COUNTER,
            ZoneKind.NON_CASH_COUNTER,
            ZoneKind.WEALTH_DESK,
            ZoneKind.CONSULTATION,
        }


#: Per-zone state copied by name across every boundary (edge state -> MQTT payload ->
#: collector record -> API). Identity (branch/camera/zone/device), the observation
#: time and the completed dwells are carried too, but each boundary re-expresses them
#: (epoch seconds vs ISO 8601, a list drained per message), so they are not listed.
ZONE_STATE_FIELDS: tuple[str, ...] = (
    "kind",
    "blueprint",
    "people",
    "raw_count",
    "dwell_p50_s",
    "dwell_p90_s",
    "dwell_max_s",
    "arrivals_total",
    "departures_total",
    # departures from a waiting zone by destination; None from edges without flows
    "service_starts_total",
    "walk_outs_total",
    "departures_unseen_total",
)

#: Fields of ``ZONE_STATE_FIELDS`` that are durations in seconds (the agent rounds them
#: to milliseconds before publishing).
ZONE_DURATION_FIELDS: frozenset[str] = frozenset(
    name for name in ZONE_STATE_FIELDS if name.startswith("dwell_")
)
