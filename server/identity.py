"""Which device may speak for which branch and camera.

The broker ACL authorises *topics*, and zone and camera topics name a branch and a
camera, not a device; the device id travels in the payload. Without a binding a
device could publish, on its own topic, a payload naming another branch's device
(and poison that device's sequence window). So the collector binds identities:

* **from configuration** (``branches[].devices``): a listed device may publish
  only for its branch, and a branch with a list accepts no other device;
* **on first sight** otherwise: a device is bound to the first branch it publishes
  for, and a camera ``(branch, camera)`` to the first device publishing for it.
  A binding moves only after the bound device was silent for
  ``ingest.rebind_after_s`` (a replaced box takes over its camera).

Bindings made on first sight are persisted (table ``identity_bindings``, written
off the processing thread) and restored at start, so a restart does not open a
window in which a hostile device publishing first could claim another's camera.
A restored binding counts as seen at the restart: the collector cannot tell how
long a device was silent while it was down, so the bound device gets a full
``rebind_after_s`` to come back.

A refused message is counted (``reason="identity"``) and never touches state.
Memory is bounded by the collector.s ``max_zones_and_devices`` cap.
"""

from __future__ import annotations

from collections.abc import Mapping


class IdentityBook:
    """Bindings device → branch and (branch, camera) → device.

    Args:
        configured: branch -> devices allowed to publish for it (branches absent: any).
        rebind_after_s: a binding whose device was silent this long may move.
        max_entries: bound on remembered devices and cameras (beyond: refused).
    """

    def __init__(
        self,
        configured: Mapping[str, frozenset[str]] | None = None,
        rebind_after_s: float = 900.0,
        max_entries: int = 100_000,
    ) -> None:
        self.configured = dict(configured or {})
        self.home: dict[str, str] = {
            d: b for b, devices in self.configured.items() for d in devices
        }
        self.rebind_after_s = rebind_after_s
        self.max_entries = max_entries
        #: device -> (branch, last accepted receive time)
        self._device: dict[str, tuple[str, float]] = {}
        #: (branch, camera) -> (device, last accepted receive time)
        self._camera: dict[tuple[str, str], tuple[str, float]] = {}
        #: bindings made or moved since the last :meth:`take_changes`: (subject, owner, at)
        self._changes: list[tuple[str, str, float]] = []

    def take_changes(self) -> list[tuple[str, str, float]]:
        """New or moved bindings to persist (each subject once, the newest)."""
        changes, self._changes = self._changes, []
        return list({s: (s, o, t) for s, o, t in changes}.values())

    def restore(self, rows: list[tuple[str, str, float]], now: float) -> int:
        """Load persisted bindings, each as seen at ``now``; returns how many were loaded."""
        n = 0
        for subject, owner, _bound_at in rows:
            kind, _, key = subject.partition(":")
            if kind == "device":
                self._device[key] = (owner, now)
            elif kind == "camera" and "/" in key:
                branch, _, camera = key.partition("/")
                self._camera[(branch, camera)] = (owner, now)
            else:
                continue
            n += 1
        return n

    def owner(self, branch: str, camera: str) -> str | None:
        """The device bound to ``branch``/``camera`` (the last that published for it), or
        ``None``."""
        bound = self._camera.get((branch, camera))
        return bound[0] if bound is not None else None

    def check(self, branch: str, camera: str | None, device: str, now: float) -> str | None:
        """None if ``device`` may publish for ``branch``/``camera`` (and bind it), else why."""
        home = self.home.get(device)
        if home is not None and home != branch:
            return f"device {device!r} is configured for branch {home!r}, not {branch!r}"
        allowed = self.configured.get(branch)
        if allowed is not None and device not in allowed:
            return f"device {device!r} is not configured for branch {branch!r}"
        bound = self._device.get(device)
        if bound is not None and bound[0] != branch and now - bound[1] < self.rebind_after_s:
            return f"device {device!r} publishes for branch {bound[0]!r}, not {branch!r}"
        if camera is not None:
            owner = self._camera.get((branch, camera))
            if owner is not None and owner[0] != device and now - owner[1] < self.rebind_after_s:
                return f"camera {branch}/{camera} belongs to device {owner[0]!r}, not {device!r}"
            if owner is None and len(self._camera) >= self.max_entries:
                return "too many cameras"
            if owner is None or owner[0] != device:
                self._changes.append((f"camera:{branch}/{camera}", device, now))
            self._camera[(branch, camera)] = (device, now)
        if bound is None and len(self._device) >= self.max_entries:
            return "too many devices"
        if bound is None or bound[0] != branch:
            self._changes.append((f"device:{device}", branch, now))
        self._device[device] = (branch, now)
        return None
