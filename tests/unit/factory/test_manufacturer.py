"""Manufacturing: only devices certified by a trusted manufacturer CA are genuine."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from opensphere.factory import (
    IDEVID_FILE,
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
from opensphere.formats.device_id import device_id_from_public_key
from opensphere.formats.evidence import ManufacturingState
from opensphere.rot import AlreadyManufacturedError, EmulatedRootOfTrust

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=30)

CA = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


@pytest.fixture(scope="module")
def ca() -> CA:
    return create_manufacturer_ca("Contoso Devices Manufacturer CA", now=NOW, validity_days=3650)


def test_genuine_device_chain_is_accepted(ca: CA, tmp_path: Path) -> None:
    device_id = manufacture_device(tmp_path, *ca, now=NOW)
    assert verify_idevid(load_idevid(tmp_path), [ca[1]], now=LATER) == device_id
    rot = EmulatedRootOfTrust.open(tmp_path)
    assert rot.device_id == device_id
    assert rot.manufacturing_state is ManufacturingState.DEVICE_COMPLETE


def test_genuine_device_is_accepted_among_several_trusted_cas(ca: CA, tmp_path: Path) -> None:
    other = create_manufacturer_ca("Fabrikam CA", now=NOW, validity_days=365)
    device_id = manufacture_device(tmp_path, *ca, now=NOW)
    assert verify_idevid(load_idevid(tmp_path), [other[1], ca[1]], now=LATER) == device_id


def test_self_made_idevid_from_an_untrusted_ca_is_refused(ca: CA, tmp_path: Path) -> None:
    rot = EmulatedRootOfTrust.manufacture(tmp_path)
    rogue_key, rogue_cert = create_manufacturer_ca(
        "Contoso Devices Manufacturer CA", now=NOW, validity_days=3650
    )
    forged = issue_idevid(rogue_key, rogue_cert, rot.public_key(), rot.device_id, now=NOW)
    with pytest.raises(NotGenuineError, match="does not chain to a trusted manufacturer CA"):
        verify_idevid(forged, [ca[1]], now=LATER)


def test_idevid_whose_key_does_not_match_its_device_id_is_refused(ca: CA) -> None:
    victim_id = device_id_from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    attacker_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    ca_key, ca_cert = ca
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    mismatched = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, victim_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(attacker_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(attacker_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    with pytest.raises(NotGenuineError, match="not the key of its device ID"):
        verify_idevid(mismatched, [ca_cert], now=LATER)


def test_issuing_for_a_mismatched_device_id_is_refused(ca: CA) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    other_id = device_id_from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(ManufacturingError, match="not the ID of the device public key"):
        issue_idevid(*ca, key, other_id, now=NOW)


def test_expired_ca_is_refused(tmp_path: Path) -> None:
    short_lived = create_manufacturer_ca("Short-lived CA", now=NOW, validity_days=1)
    manufacture_device(tmp_path, *short_lived, now=NOW)
    with pytest.raises(NotGenuineError, match="not valid at validation time"):
        verify_idevid(load_idevid(tmp_path), [short_lived[1]], now=NOW + dt.timedelta(days=2))


def test_no_trusted_ca_configured(ca: CA, tmp_path: Path) -> None:
    manufacture_device(tmp_path, *ca, now=NOW)
    with pytest.raises(NotGenuineError, match="configure at least one"):
        verify_idevid(load_idevid(tmp_path), [], now=LATER)


def test_ca_certificate_profile(ca: CA) -> None:
    certificate = ca[1]
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert not usage.value.digital_signature
    ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(ca[0].public_key())
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)


def test_idevid_profile(ca: CA, tmp_path: Path) -> None:
    device_id = manufacture_device(tmp_path, *ca, now=NOW)
    idevid = load_idevid(tmp_path)
    serials = idevid.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    assert [attribute.value for attribute in serials] == [device_id]
    usage = idevid.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.key_cert_sign
    assert idevid.not_valid_after_utc.year == 9999
    assert stat.S_IMODE((tmp_path / IDEVID_FILE).stat().st_mode) == 0o600


def test_manufacturing_a_device_twice_is_refused(ca: CA, tmp_path: Path) -> None:
    manufacture_device(tmp_path, *ca, now=NOW)
    with pytest.raises(AlreadyManufacturedError):
        manufacture_device(tmp_path, *ca, now=NOW)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        create_manufacturer_ca("CA", now=dt.datetime(2026, 1, 1), validity_days=1)


def test_ca_round_trips_through_pem_files(ca: CA, tmp_path: Path) -> None:
    key_path, cert_path = tmp_path / "ca.key", tmp_path / "ca.pem"
    save_manufacturer_ca(*ca, key_path=key_path, cert_path=cert_path, password=b"pass phrase")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key, certificate = load_manufacturer_ca(
        key_path=key_path, cert_path=cert_path, password=b"pass phrase"
    )
    assert certificate == ca[1]
    assert key.public_key() == ca[0].public_key()


def test_saving_over_an_existing_ca_key_is_refused(ca: CA, tmp_path: Path) -> None:
    key_path, cert_path = tmp_path / "ca.key", tmp_path / "ca.pem"
    key_path.write_bytes(b"precious")
    with pytest.raises(ManufacturingError, match="refusing to overwrite"):
        save_manufacturer_ca(*ca, key_path=key_path, cert_path=cert_path)
    assert key_path.read_bytes() == b"precious"


def test_loading_a_key_others_can_read_is_refused(ca: CA, tmp_path: Path) -> None:
    key_path, cert_path = tmp_path / "ca.key", tmp_path / "ca.pem"
    save_manufacturer_ca(*ca, key_path=key_path, cert_path=cert_path)
    key_path.chmod(0o644)
    with pytest.raises(ManufacturingError, match="chmod 600"):
        load_manufacturer_ca(key_path=key_path, cert_path=cert_path)


def test_loading_with_the_wrong_password_is_refused(ca: CA, tmp_path: Path) -> None:
    key_path, cert_path = tmp_path / "ca.key", tmp_path / "ca.pem"
    save_manufacturer_ca(*ca, key_path=key_path, cert_path=cert_path, password=b"right")
    with pytest.raises(ManufacturingError, match="cannot load"):
        load_manufacturer_ca(key_path=key_path, cert_path=cert_path, password=b"wrong")


def test_loading_a_key_that_does_not_match_the_certificate_is_refused(
    ca: CA, tmp_path: Path
) -> None:
    other = create_manufacturer_ca("Other CA", now=NOW, validity_days=10)
    save_manufacturer_ca(other[0], ca[1], key_path=tmp_path / "k", cert_path=tmp_path / "c")
    with pytest.raises(ManufacturingError, match="not the private key"):
        load_manufacturer_ca(key_path=tmp_path / "k", cert_path=tmp_path / "c")


def test_loading_a_missing_ca_says_so(tmp_path: Path) -> None:
    with pytest.raises(ManufacturingError, match="cannot load the manufacturer CA"):
        load_manufacturer_ca(key_path=tmp_path / "absent.key", cert_path=tmp_path / "absent.pem")
