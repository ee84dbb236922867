"""An intake event the SLA monitor cannot apply is parked on the clock driver's dead-letter topic with the
reason, and the clocks go on with the next events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from opsat.common.envelope import encode, to_cloudevent
from opsat.common.testing.infra import consume_all
from opsat.sla_monitor.service import SERVICE as SLA
from tests.integration.sla_monitor.clock_helpers import eventually


async def test_a_submitted_event_without_an_organisation_is_parked_and_the_next_request_gets_its_clock(
        intake, run_service, kafka_bootstrap):
    sla = await run_service(SLA, consumer_max_retries=1)
    agent = sla.token("bob", "ops", "agent")
    broken_id = str(uuid.uuid4())
    poison = to_cloudevent(source="/opsat/intake", event_id=str(uuid.uuid4()),
                           ce_type="opsat.intake.request.submitted.v1", stream_id=broken_id, stream_type="request",
                           version=1, time=datetime.now(UTC),
                           data={"request_id": broken_id, "at": datetime.now(UTC).isoformat(), "kind": "incident",
                                 "priority": "P2"},  # no organisation_id
                           metadata={"tenant": "acme", "actor": "u-req", "correlation_id": "c"})
    async with intake.worker(only=("relay",)):
        rid = await intake.submit()  # creates intake's topic, then the poison follows on the same topic
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(intake.settings.topic("intake"), value=encode(poison),
                                         key=broken_id.encode())
        finally:
            await producer.stop()
        async with sla.worker():
            later = await intake.submit()

            async def has_clock(request_id: str) -> bool:
                r = await sla.client.get(f"/api/v1/clocks/{request_id}", headers=agent)
                return r.status_code == 200

            await eventually(lambda: has_clock(rid))
            await eventually(lambda: has_clock(later))
            parked = await consume_all(kafka_bootstrap, SLA.dlq_topic(sla.settings, "clock_driver"), min_count=1)
    assert len(parked) == 1
    headers = dict(parked[0].headers)
    assert b"organisation_id" in headers["error"] and headers["projection"] == b"clock_driver"
    assert (await sla.client.get(f"/api/v1/clocks/{broken_id}", headers=agent)).status_code == 404
