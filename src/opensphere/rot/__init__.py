"""Root of trust: the device identity key, measured boot and one-way state.

Code that needs a root of trust takes the `RootOfTrust` protocol; which backend stands
behind it (emulated, or a TPM 2.0 through tpm2-pytss) is chosen in one wiring place.
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
from opensphere.rot.tpm import TpmError, TpmRootOfTrust

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
    "TpmError",
    "TpmRootOfTrust",
]
