"""The OpenAPI contract of a service, checked by schemathesis against the app itself (in-process, over ASGI).

`check_contract(SERVICE, settings)` migrates the service's database, builds its app from the description, and
lets schemathesis generate requests for every operation of the app's own OpenAPI document (examples,
coverage, fuzzing and stateful phases) with every check enabled, among them "status code conformance" (an
answer the document does not list) and "response schema conformance" (a body that does not fit the document,
problem+json errors included). A token of the provider's staff holding every role rides on every request;
the checks that matter for auth (`ignored_auth`, `missing_required_header`) send requests without it.

In a service's tests it is one line, through the plugin's `openapi_contract` fixture:

    def test_openapi_contract(openapi_contract):
        openapi_contract(SERVICE)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opsat.common.auth import mint_token
from opsat.common.domain import Role
from opsat.common.migrations import upgrade
from opsat.common.service import Service
from opsat.common.settings import ServiceSettings

CONTRACT_ORGANISATION = "ops"  # the provider organisation of `settings_for_tests`


@dataclass
class ContractReport:
    operations: int = 0
    cases: int = 0  # requests sent and judged
    checks: int = 0  # check results (one request meets many checks)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.operations} operations, {self.cases} cases, {self.checks} checks, "
                f"{len(self.failures)} failures, {len(self.errors)} errors in {self.seconds:.0f} s")


def contract_config(token: str, *, max_examples: int, seed: int | None, stateful: bool) -> dict[str, Any]:
    return {
        "seed": seed,
        "generation": {"max-examples": max_examples, "deterministic": False},
        "checks": {
            "enabled": True,
            "max_response_time": 10.0,  # seconds: a hang fails too
            # Schema-valid input may still break a domain rule (422: a cursor this API never issued, a team
            # a request needs) or name a version the request is not at (412); both are documented answers.
            "positive_data_acceptance": {"expected-statuses": ["2XX", 401, 403, 404, 409, 412, 422, 429, 503]},
            # Visibility (404) and If-Match (412) are judged before the input: a stale version with a bad body is
            # a 412, as documented, and is a refusal all the same.
            "negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 405, 406, 409, 412, 415, 422, 428,
                                                              429, "5XX"]},
        },
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
                   "stateful": {"enabled": stateful}},
        "headers": {"Authorization": f"Bearer {token}"},
        "request-timeout": 30,
    }


def check_contract(service: Service, settings: ServiceSettings, *, max_examples: int = 10, seed: int | None = 1,
                   stateful: bool = True) -> ContractReport:
    """Run schemathesis over every operation of the service's API; the figures and whatever failed."""
    import schemathesis
    from schemathesis.config import SchemathesisConfig
    from schemathesis.core.result import Ok
    from schemathesis.engine import Status, events, from_schema

    # No worker runs here: a read-your-writes wait would only time out, so reads answer at once.
    settings = settings.model_copy(update={"read_your_writes_timeout_s": 0.0})
    upgrade(settings.database_url, service.migrations)
    app = service.create_app(settings)
    token = mint_token(settings, sub="contract-runner", org=CONTRACT_ORGANISATION, roles=[r.value for r in Role],
                       ttl_s=3600)
    config = SchemathesisConfig.from_dict(contract_config(token, max_examples=max_examples, seed=seed,
                                                          stateful=stateful))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    report = ContractReport(operations=sum(isinstance(op, Ok) for op in schema.get_all_operations()))
    seen: set[str] = set()
    try:
        for event in from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                recorder = event.recorder
                report.cases += len(recorder.interactions)
                for case_id, nodes in recorder.checks.items():
                    report.checks += len(nodes)
                    for node in nodes:
                        if node.status == Status.FAILURE and node.failure_info is not None:
                            failure = node.failure_info.failure
                            text = f"{recorder.label}: {node.name}: {failure.title}: {failure.message[:300]}"
                            if text not in seen:
                                seen.add(text)
                                report.failures.append(text)
            elif isinstance(event, events.NonFatalError):
                report.errors.append(f"{event.label}: {event.info.format()[:500]}")
            elif isinstance(event, events.FatalError):
                report.errors.append(f"fatal: {event.exception!r}")
            elif isinstance(event, events.EngineFinished):
                report.seconds = event.running_time
                report.failures += [f"after the run: {f.title}: {f.message[:300]}" for f in event.failures]
    finally:
        from schemathesis.python.asgi import shutdown_lifespans

        shutdown_lifespans()  # the app's engine closes in the loop that opened it
    return report
