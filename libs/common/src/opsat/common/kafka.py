"""Topic administration: create the topics a service needs, with explicit partition counts."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


async def ensure_topics(bootstrap: str, topics: dict[str, int], *, replication: int = 1) -> None:
    """Create missing topics ({name: partitions}); existing ones are left as they are.

    Production sets OPSAT_KAFKA_REPLICATION_FACTOR (e.g. 3): a topic created with 1 replica stays so."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, partitions, replication) for name, partitions in topics.items() if name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another replica created it first
    finally:
        await admin.close()
