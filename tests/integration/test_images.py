"""Images: upload, validation, production signing, immutability, download, and the attacks."""

from __future__ import annotations

import hashlib
import uuid

from cryptography.hazmat.primitives.asymmetric import ec
from helpers import assert_problem, create_tenant, member
from update_helpers import app_package, upload, uploaded

from conftest import Api
from opensphere.formats.image_package import (
    ImageType,
    KeySigner,
    key_thumbprint,
    parse_package,
    resign_package,
)


def test_a_test_signed_package_is_production_signed_and_stored(api: Api) -> None:
    tenant = create_tenant(api)
    data = app_package()
    response = upload(api, tenant["id"], data)
    assert response.status_code == 201, response.text
    image = response.json()
    original = parse_package(data)
    assert image["image_id"] == str(original.metadata.identity.image_id)
    assert image["image_type"] == "Applications"
    assert image["uploaded_by"] == "operator"

    content = api.client.get(
        f"/v1/tenants/{tenant['id']}/images/{image['image_id']}/content", headers=api.operator
    )
    assert content.status_code == 200
    stored = parse_package(content.content)
    assert hashlib.sha256(content.content).hexdigest() == image["sha256"]
    assert len(content.content) == image["length"]
    assert stored.signer_thumbprint.hex() == image["signer_thumbprint"]
    assert stored.signer_thumbprint != original.signer_thumbprint
    assert stored.body == original.body
    assert stored.metadata == original.metadata

    listed = api.client.get(f"/v1/tenants/{tenant['id']}/images", headers=api.operator).json()
    assert [i["image_id"] for i in listed["items"]] == [image["image_id"]]
    shown = api.client.get(
        f"/v1/tenants/{tenant['id']}/images/{image['image_id']}", headers=api.operator
    )
    assert shown.json() == image


def test_images_are_immutable_but_the_same_package_again_is_accepted(api: Api) -> None:
    tenant = create_tenant(api)
    data = app_package()
    first = upload(api, tenant["id"], data)
    again = upload(api, tenant["id"], data)
    assert again.status_code == 200
    assert again.json() == first.json()
    # Downloading and uploading the production-signed package again is the same image too.
    stored = api.client.get(
        f"/v1/tenants/{tenant['id']}/images/{first.json()['image_id']}/content",
        headers=api.operator,
    ).content
    assert upload(api, tenant["id"], stored).status_code == 200
    # The same image ID with another body is a conflict.
    package = parse_package(data)
    from opensphere.formats.image_package import build_unsigned, sign_package
    from support.device_os import sdk_test_signer

    signer = sdk_test_signer()
    other = sign_package(
        build_unsigned(
            package.metadata, b"other body", signer_thumbprint=key_thumbprint(signer.public_key())
        ),
        signer,
    )
    assert_problem(upload(api, tenant["id"], other), 409, "image_exists")


def test_a_package_signed_by_another_tenant_is_refused(api: Api) -> None:
    """Tenant B downloads A's production image and tries to make it its own."""
    a = create_tenant(api)
    b = create_tenant(api)
    image = uploaded(api, a["id"])
    stolen = api.client.get(
        f"/v1/tenants/{a['id']}/images/{image['image_id']}/content", headers=api.operator
    ).content
    assert_problem(upload(api, b["id"], stolen), 400, "untrusted_signer")
    own_key = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    assert_problem(upload(api, b["id"], app_package(own_key)), 400, "untrusted_signer")
    assert api.client.get(f"/v1/tenants/{b['id']}/images", headers=api.operator).json() == {
        "items": [],
        "continuation_token": None,
    }


def test_garbage_bad_signatures_and_os_images_are_refused(api: Api) -> None:
    tenant = create_tenant(api)
    assert_problem(upload(api, tenant["id"], b"not a package"), 400, "invalid_image_package")
    data = bytearray(app_package())
    data[12] ^= 1  # the first body byte
    assert_problem(upload(api, tenant["id"], bytes(data)), 400, "bad_signature")
    kernel = app_package(image_type=ImageType.NormalWorldKernel)
    assert_problem(upload(api, tenant["id"], kernel), 400, "image_type_not_allowed")


def test_an_oversized_upload_is_refused_with_413(api: Api) -> None:
    tenant = create_tenant(api)
    response = upload(api, tenant["id"], b"\0" * (64 * 1024 * 1024 + 1))
    assert_problem(response, 413, "payload_too_large")


def test_readers_see_images_but_only_contributors_upload(api: Api) -> None:
    tenant = create_tenant(api)
    reader = member(api, tenant["id"], "Reader")
    contributor = member(api, tenant["id"], "Contributor")
    assert_problem(upload(api, tenant["id"], app_package(), reader), 403, "forbidden")
    response = upload(api, tenant["id"], app_package(), contributor)
    assert response.status_code == 201, response.text
    assert response.json()["uploaded_by"].startswith("contributor-")
    listed = api.client.get(f"/v1/tenants/{tenant['id']}/images", headers=reader)
    assert len(listed.json()["items"]) == 1
    missing = api.client.get(f"/v1/tenants/{tenant['id']}/images/{uuid.uuid4()}", headers=reader)
    assert_problem(missing, 404, "image_not_found")


def test_the_upload_is_audited(api: Api) -> None:
    tenant = create_tenant(api)
    image = uploaded(api, tenant["id"])
    upload(api, tenant["id"], b"junk")
    events = api.client.get(
        f"/v1/tenants/{tenant['id']}/audit", params={"action": "image.upload"}, headers=api.operator
    ).json()["items"]
    results = sorted((e["result"], e["target_id"]) for e in events)
    assert results == [("failure", None), ("success", image["image_id"])]


def test_resigning_is_deterministic() -> None:
    """Why the same upload twice is recognised: RFC 6979 signatures."""
    signer = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    data = app_package()
    assert resign_package(data, signer) == resign_package(data, signer)
