"""applibs: how an OpenSphere app reaches its device, like Azure Sphere's applibs headers.

Apps have no other way to touch peripherals, storage or the network. Every call goes to the
runtime over the connection the runtime gave the app at start; the runtime checks it against
the app's manifest. A capability the manifest does not grant raises ``PermissionError`` (EPERM),
a malformed call ``ValueError``, and a failing device service ``OSError`` with its errno.

Inside an app: ``from applibs import adc, gpio, networking, storage``.
"""

from __future__ import annotations

from . import adc, deviceauth, events, gpio, i2c, networking, pwm, storage, uart

__all__ = ["adc", "deviceauth", "events", "gpio", "i2c", "networking", "pwm", "storage", "uart"]
