"""Fixtures of the feedback tests: a local SMTP sink and the feedback service sending to it."""

from __future__ import annotations

import pytest
import pytest_asyncio
from feedback_story import Feedback, SmtpSink, free_port

from opsat.feedback.service import SERVICE


@pytest.fixture
def smtp_sink():  # type: ignore[no-untyped-def]
    sink = SmtpSink(free_port()).start()
    yield sink
    sink.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def feedback(request: pytest.FixtureRequest, run_service, smtp_sink) -> Feedback:  # type: ignore[no-untyped-def]
    """Overrides: `@pytest.mark.feedback_settings(sampling_rate=0.0)`."""
    marker = request.node.get_closest_marker("feedback_settings")
    overrides = {"smtp_port": smtp_sink.port, "mail_poll_interval_s": 0.2, "mail_retry_base_s": 0.5,
                 "mail_retry_max_s": 1.0, **(marker.kwargs if marker else {})}
    return await run_service(SERVICE, harness=Feedback, **overrides)
