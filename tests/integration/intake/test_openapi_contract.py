"""Intake's OpenAPI document against what intake answers: schemathesis, every operation, every check."""

from opsat.intake.service import SERVICE


def test_openapi_contract(openapi_contract):
    openapi_contract(SERVICE)
