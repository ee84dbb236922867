"""The appraisal service's OpenAPI document against what it answers: schemathesis, every operation, every check."""

from opsat.appraisal.service import SERVICE


def test_openapi_contract(openapi_contract):
    openapi_contract(SERVICE)
