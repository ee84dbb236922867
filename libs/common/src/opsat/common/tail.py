"""`opsat-tail TOPIC`: print the CloudEvents on a topic, one JSON object per line (for humans and demos)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from aiokafka import AIOKafkaConsumer


async def tail(bootstrap: str, topic: str, *, from_beginning: bool, limit: int | None, idle_exit_s: float | None,
               pretty: bool) -> int:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest" if from_beginning else "latest")
    await consumer.start()
    seen = 0
    try:
        while limit is None or seen < limit:
            batch = await consumer.getmany(timeout_ms=int((idle_exit_s or 1.0) * 1000))
            if not batch and idle_exit_s is not None:
                break
            for records in batch.values():
                for record in records:
                    try:
                        value = json.loads(record.value)
                    except ValueError:
                        value = {"undecodable": record.value.decode("utf-8", "replace")}
                    shown = {"partition": record.partition, "offset": record.offset, "event": value}
                    if record.headers:  # a dead letter's reason and origin are in its headers
                        shown["headers"] = {k: v.decode("utf-8", "replace") for k, v in record.headers}
                    line = json.dumps(shown, ensure_ascii=False, indent=2 if pretty else None)
                    print(line, flush=True)
                    seen += 1
    finally:
        await consumer.stop()
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description="Print the events on a Kafka topic.")
    parser.add_argument("topic", nargs="?", default="opsat.intake.events")
    parser.add_argument("--bootstrap", default=os.environ.get("OPSAT_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--idle-exit", type=float, help="stop after this many seconds without a new event")
    parser.add_argument("--pretty", action="store_true")
    args = parser.parse_args()
    try:
        asyncio.run(tail(args.bootstrap, args.topic, from_beginning=args.from_beginning, limit=args.limit,
                         idle_exit_s=args.idle_exit, pretty=args.pretty))
    except KeyboardInterrupt:
        sys.exit(0)
