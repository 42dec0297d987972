"""The device's certificate, for apps whose manifest has ``DeviceAuthentication``."""

from __future__ import annotations

from . import _client


def certificate_path() -> str:
    """Where the app can read the device certificate chain (PEM); OSError if none is issued yet."""
    return str(_client.call("deviceauth.certificate_path"))
