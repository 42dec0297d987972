"""Root of trust: the device identity key, measured boot and one-way state.

Code that needs a root of trust takes the `RootOfTrust` protocol; which backend stands
behind it (emulated now, TPM 2.0 later) is chosen in one wiring place.
"""

from opensphere.rot.errors import (
    AlreadyManufacturedError,
    CounterRollbackError,
    ManufacturingStateError,
    RootOfTrustError,
    RootOfTrustMissingError,
    SealedStateError,
)
from opensphere.rot.interface import RootOfTrust
from opensphere.rot.software import EmulatedRootOfTrust, EmulatedRootOfTrustWarning

__all__ = [
    "AlreadyManufacturedError",
    "CounterRollbackError",
    "EmulatedRootOfTrust",
    "EmulatedRootOfTrustWarning",
    "ManufacturingStateError",
    "RootOfTrust",
    "RootOfTrustError",
    "RootOfTrustMissingError",
    "SealedStateError",
]
