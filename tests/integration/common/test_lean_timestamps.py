"""`lean_timestamps`: an engine whose connections write and read `timestamptz` through `encode_timestamp` and
`decode_timestamp` stores and returns exactly what asyncpg's own codec does, over real PostgreSQL: aware values at
any offset, naive ones and dates in local time (under three local zones, one with summer time), the infinities
and the instants asyncpg writes as them, the ends of the datetime range; by parameter and by COPY (a rebuild lane's
path)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError

from opsat.common.db import create_engine, decode_timestamp, encode_timestamp, lean_timestamps


def _values() -> list[datetime | date]:
    rng = random.Random(7)
    offsets = [timezone(timedelta(minutes=m)) for m in (-14 * 60, -9 * 60 - 30, -60, 0, 45, 5 * 60 + 30, 14 * 60)]
    values: list[datetime | date] = [
        datetime.max, datetime.min, datetime(2000, 1, 1), datetime(2000, 1, 1, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC), datetime.max.replace(tzinfo=UTC),
        datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=timezone(timedelta(hours=-3))),
        datetime(1, 1, 1, 3, tzinfo=timezone(timedelta(hours=3))),  # datetime.min's instant, at another offset
        datetime(2026, 3, 8, 2, 30), datetime(2026, 11, 1, 1, 30),  # naive, in New York's spring gap and fall overlap
        date(2026, 7, 1), date(1970, 1, 1),
    ]
    for _ in range(150):
        instant = datetime(1, 1, 2, tzinfo=UTC) + timedelta(microseconds=rng.randrange(315_500_000_000_000_000))
        values.append(instant.astimezone(rng.choice(offsets)))
        values.append(instant.replace(tzinfo=None))
    values += [date(rng.randrange(1, 9999), rng.randrange(1, 13), rng.randrange(1, 29)) for _ in range(20)]
    return values


@contextmanager
def _local_zone(zone: str) -> Iterator[None]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


async def _round_trip(conn: Any, value: datetime | date) -> tuple[str, Any]:
    """The value as PostgreSQL stored it (its text) and as it came back; or that the driver refused it."""
    try:
        async with conn.begin_nested():
            return tuple((await conn.exec_driver_sql("select $1::timestamptz::text, $1::timestamptz", (value,))).one())
    except DBAPIError as refused:
        return ("refused", type(refused.orig.__cause__).__name__)


def _same(a: Any, b: Any) -> bool:
    return a == b and type(a) is type(b) and getattr(a, "tzinfo", None) == getattr(b, "tzinfo", None)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai", "America/New_York"])
async def test_lean_timestamps_write_and_read_what_asyncpgs_codec_does(database_url, zone):
    values = _values()
    plain, lean = create_engine(database_url, pool_size=1), lean_timestamps(create_engine(database_url, pool_size=1))
    try:
        with _local_zone(zone):
            results = {}
            for name, engine in (("plain", plain), ("lean", lean)):
                async with engine.connect() as conn:
                    results[name] = [await _round_trip(conn, value) for value in values]
                    raw = (await conn.get_raw_connection()).driver_connection
                    await raw.execute(f"create temp table copied_{name} (n int, at timestamptz)")
                    writable = [(n, v) for n, v in enumerate(values) if results["plain"][n][0] != "refused"]
                    await raw.copy_records_to_table(f"copied_{name}", records=writable)
                    results[f"copy_{name}"] = [r["at"] for r in await raw.fetch(
                        f"select at::text as at from copied_{name} order by n")]
                    await conn.rollback()
    finally:
        await plain.dispose()
        await lean.dispose()
    assert [text for text, _ in results["lean"]] == [text for text, _ in results["plain"]]
    mismatched = [(v, a, b) for v, (_, a), (_, b) in zip(values, results["lean"], results["plain"], strict=True)
                  if not _same(a, b)]
    assert mismatched == []
    assert results["copy_lean"] == results["copy_plain"] == [text for text, _ in results["plain"] if text != "refused"]
    assert results["plain"][0][0] == "infinity" and results["plain"][1][0] == "-infinity"
    assert ("refused", "DataError") in results["plain"]  # datetime.max at UTC-3: past year 9999 in UTC


def test_the_tuple_form_is_microseconds_since_2000_in_utc():
    assert encode_timestamp(datetime(2000, 1, 1, 8, tzinfo=timezone(timedelta(hours=8)))) == (0,)
    assert encode_timestamp(datetime(2000, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == (1_000_005,)
    assert decode_timestamp((-1,)) == datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert decode_timestamp((2**63 - 1,)) == datetime.max and decode_timestamp((-(2**63),)) == datetime.min
    with pytest.raises(TypeError, match="got 'str'"):
        encode_timestamp("2026-01-01")  # type: ignore[arg-type]
