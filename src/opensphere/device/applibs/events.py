"""System events and update deferral (``SystemEventNotifications``, ``SoftwareUpdateDeferral``).

When an update is ready the runtime queues an ``UpdateReadyForInstall`` event for apps that
receive notifications; such an app may defer the install, for at most 24 hours in total.
"""

from __future__ import annotations

from typing import Any

from . import _client


def poll() -> list[dict[str, Any]]:
    """Events queued since the last poll, oldest first; never waits."""
    return list(_client.call("events.poll"))


def defer_update(minutes: int) -> str:
    """Ask to postpone the pending update; returns the ISO time it is now deferred until."""
    return str(_client.call("events.defer", minutes=minutes))


def resume_update() -> None:
    """Withdraw this app's deferral, so the update may install."""
    _client.call("events.resume")
