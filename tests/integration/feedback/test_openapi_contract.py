"""The feedback service's OpenAPI document against what it answers: schemathesis, every operation, every check."""

from opsat.feedback.service import SERVICE


def test_openapi_contract(openapi_contract):
    openapi_contract(SERVICE, max_examples=2)  # 22 operations: keeps the run near 30 s on two cores
