"""Manufacturing: the manufacturer CA and device provisioning, as a library the CLI calls."""

from opensphere.factory.manufacturer import (
    IDEVID_FILE,
    IdevidVerifier,
    ManufacturingError,
    NotGenuineError,
    create_manufacturer_ca,
    issue_idevid,
    load_idevid,
    load_manufacturer_ca,
    manufacture_device,
    save_manufacturer_ca,
    verify_idevid,
)

__all__ = [
    "IDEVID_FILE",
    "IdevidVerifier",
    "ManufacturingError",
    "NotGenuineError",
    "create_manufacturer_ca",
    "issue_idevid",
    "load_idevid",
    "load_manufacturer_ca",
    "manufacture_device",
    "save_manufacturer_ca",
    "verify_idevid",
]
