"""One exception root for the root of trust; each subclass says what the user can do."""


class RootOfTrustError(Exception):
    """The root of trust refused an operation or its state cannot be trusted."""


class RootOfTrustMissingError(RootOfTrustError):
    """There is no root of trust where one was expected (not manufactured, or deleted)."""


class AlreadyManufacturedError(RootOfTrustError):
    """Manufacturing would overwrite an existing identity, which must never happen."""


class SealedStateError(RootOfTrustError):
    """The sealed state is tampered, truncated, from another device or unreadable.

    It is never re-created: a new identity would be a different device.
    """


class ManufacturingStateError(RootOfTrustError):
    """The manufacturing state can only move forward (Blank → Module1Complete → DeviceComplete)."""


class CounterRollbackError(RootOfTrustError):
    """A monotonic counter was asked to go down; anti-rollback counters never decrease."""
