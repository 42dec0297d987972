"""A bounded schema-based fuzz run (schemathesis) over every operation: no input reaches a 500.

Half of the generated cases aim at real objects (the operator's tenant, product
and device group) so that bodies reach the business logic, not just the 404 of a
random GUID.
"""

from __future__ import annotations

import os

import hypothesis
import schemathesis
from helpers import create_product, create_tenant
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error, response_schema_conformance

from conftest import Api

EXAMPLES = int(os.environ.get("OPENSPHERE_FUZZ_EXAMPLES", "40"))
# Evidence is a binary COSE body: fuzz it with arbitrary bytes.
schemathesis.serializer.alias("application/eat+cwt", "application/octet-stream")


def test_no_operation_answers_500(api: Api) -> None:
    tenant = create_tenant(api)
    product = create_product(api, tenant["id"], api.operator)
    group = api.client.get(
        f"/v1/tenants/{tenant['id']}/device-groups", headers=api.operator
    ).json()["items"][0]
    real = {"tenant_id": tenant["id"], "product_id": product["id"], "device_group_id": group["id"]}
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    problems = []
    for operation in operations:

        @hypothesis.given(case=operation.as_strategy(), aim=st.booleans())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case, aim: bool) -> None:
            if aim and case.path_parameters:
                for name in case.path_parameters:
                    if name in real:
                        case.path_parameters[name] = real[name]
            response = case.call(headers=api.operator)
            if response.status_code >= 500:
                problems.append(f"{case.method} {case.formatted_path}: {response.status_code}")
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance]
            )

        run()
    assert not problems, problems
