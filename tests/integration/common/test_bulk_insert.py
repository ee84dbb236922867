"""`insert_rows` writes exactly what SQLAlchemy's executemany writes, into the schema a rebuild redirects to;
`upsert_rows` writes what SQLAlchemy's `on_conflict_do_update` writes; `update_rows` what one SQLAlchemy UPDATE per
row writes, guarded like `where version < new version`; `insert_together` and `copy_rows` what `insert_rows` writes
per table."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert

from opsat.common.bulk import Rows, copy_records, copy_rows, insert_rows, insert_together, update_rows, upsert_rows
from opsat.common.consumer import read_model_engine
from opsat.common.db import READ_MODEL_SCHEMA, asyncpg_dsn, create_engine

metadata = MetaData(schema=READ_MODEL_SCHEMA)
things = Table(
    "bulk_things",
    metadata,
    Column("id", String, primary_key=True),
    Column("body", Text, nullable=False),
    Column("count", Integer, nullable=False),
    Column("flag", Boolean, nullable=False, default=False),
    Column("at", DateTime(timezone=True)),
    Column("doc", JSONB),  # None is JSON null here (SQLAlchemy's default)
    Column("maybe", JSONB(none_as_null=True)),  # and SQL NULL here
    Column("level", Integer, nullable=False, default=3),  # left out of the rows: its default
    Column("amount", Numeric(7, 2)),
    Column("ratio", Float),
    Column("day", Date),
    Column("tags", ARRAY(String)),
)
labels = Table(  # a second table, for `insert_together`
    "bulk_labels",
    metadata,
    Column("thing_id", String, primary_key=True),
    Column("label", String, primary_key=True),
    Column("meta", JSONB),
)

AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
ROWS = [
    {"id": "a", "body": "plain", "count": 1, "flag": True, "at": AT, "doc": {"x": [1, "two"], "é": None},
     "maybe": {"k": 1}, "amount": Decimal("12.50"), "ratio": 0.1, "day": date(2026, 3, 1), "tags": ["x", "y z"]},
    {"id": "b", "body": "quote ' \" and \\ back", "count": -7, "flag": False, "at": None, "doc": None, "maybe": None,
     "amount": None, "ratio": None, "day": None, "tags": None},
    {"id": "c", "body": "运维 ✓ \n tab\t", "count": 0, "flag": False,
     "at": datetime(2026, 3, 1, 17, 30, 0, 1, tzinfo=timezone(timedelta(hours=8))), "doc": ["\"quoted\""],
     "maybe": "text", "amount": Decimal("-0.01"), "ratio": 1e-300, "day": date(1999, 12, 31), "tags": []},
]


async def _fetch(url: str, schema: str) -> list[tuple]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch(f'select id, body, count, flag, at, doc::text, jsonb_typeof(doc), maybe::text,'
                                f' maybe is null, level, amount, ratio, day, tags from "{schema}".bulk_things order by id')
        return [tuple(r) for r in rows]
    finally:
        await conn.close()


async def _reference_and(engine, schema: str, rows: list[dict] | None = None) -> None:  # type: ignore[no-untyped-def]
    """Empty schemas `bulk_reference` (written through SQLAlchemy by the test) and `schema` (by the bulk
    helpers), each with the table, holding `rows` if given."""
    async with engine.begin() as conn:
        for name in ("bulk_reference", schema):
            await conn.execute(text(f'drop schema if exists "{name}" cascade'))
            await conn.execute(text(f'create schema "{name}"'))
    for name in ("bulk_reference", schema):
        async with read_model_engine(engine, name).begin() as conn:
            await conn.run_sync(metadata.create_all)
            if rows:
                await insert_rows(conn, things, rows)


@pytest.mark.parametrize("schema", [READ_MODEL_SCHEMA, "bulk_rebuild"])
async def test_insert_rows_writes_what_sqlalchemy_writes(database_url: str, schema: str) -> None:
    engine = create_engine(database_url)
    try:
        await _reference_and(engine, schema)
        rows = ROWS
        async with read_model_engine(engine, "bulk_reference").begin() as conn:
            await conn.execute(insert(things), rows)
        async with read_model_engine(engine, schema).begin() as conn:
            await insert_rows(conn, things, rows)
            # a conflicting row changes nothing when asked to skip conflicts
            await insert_rows(conn, things, [{**rows[0], "body": "changed"}], on_conflict_do_nothing=True)

        reference = await _fetch(database_url, "bulk_reference")
        assert [r[0] for r in reference] == ["a", "b", "c"]
        assert reference[1][6] == "null" and reference[1][8] is True  # JSON null vs SQL NULL, as SQLAlchemy does
        assert await _fetch(database_url, schema) == reference
    finally:
        await engine.dispose()


async def test_insert_rows_and_copy_rows_refuse_rows_of_different_shapes(database_url: str) -> None:
    """A row with fewer keys, or as many but another (which COPY would otherwise leave out unseen)."""
    engine = create_engine(database_url)
    renamed = {("other" if key == "body" else key): value for key, value in ROWS[1].items()}
    try:
        await _reference_and(engine, "bulk_shapes")
        async with read_model_engine(engine, "bulk_shapes").connect() as conn:
            for shapes in ([ROWS[0], {"id": "x", "body": "y"}], [ROWS[0], renamed]):
                with pytest.raises(ValueError, match="same columns"):
                    await insert_rows(conn, things, shapes)
                with pytest.raises(ValueError, match="same columns"):
                    await copy_rows(conn, Rows(things, shapes))
                await conn.rollback()
        assert await _fetch(database_url, "bulk_shapes") == []
    finally:
        await engine.dispose()


@pytest.mark.parametrize("schema", [READ_MODEL_SCHEMA, "bulk_rebuild"])
async def test_upsert_rows_inserts_new_keys_and_overwrites_existing_rows(database_url: str, schema: str) -> None:
    engine = create_engine(database_url)
    changed = [{**ROWS[1], "body": "changed", "count": 8, "flag": True, "at": AT, "doc": {"y": 2}, "maybe": None},
               {"id": "d", "body": "new", "count": 4, "flag": False, "at": None, "doc": [1], "maybe": {"z": None},
                "amount": Decimal("99999.99"), "ratio": -2.5, "day": date(2026, 2, 28), "tags": ["only"]}]
    try:
        await _reference_and(engine, schema, ROWS)
        async with read_model_engine(engine, "bulk_reference").begin() as conn:
            for row in changed:
                statement = insert(things).values(**row)
                await conn.execute(statement.on_conflict_do_update(
                    index_elements=[things.c.id], set_={k: statement.excluded[k] for k in row if k != "id"}))
        async with read_model_engine(engine, schema).begin() as conn:
            await upsert_rows(conn, things, changed, key=("id",))

        reference = await _fetch(database_url, "bulk_reference")
        assert [(r[0], r[1]) for r in reference] == [("a", "plain"), ("b", "changed"), ("c", ROWS[2]["body"]), ("d", "new")]
        assert await _fetch(database_url, schema) == reference
        async with engine.connect() as conn:
            with pytest.raises(ValueError, match="key"):
                await upsert_rows(conn, things, changed, key=("nope",))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("schema", [READ_MODEL_SCHEMA, "bulk_rebuild"])
async def test_update_rows_sets_each_row_to_its_values_where_the_guard_allows(database_url: str, schema: str) -> None:
    """`count` plays the version: row b is older than its stored count and stays; a key with no row adds none."""
    engine = create_engine(database_url)
    changes = [{"id": "a", "count": 5, "at": None, "doc": {"y": [2]}, "maybe": None},
               {"id": "b", "count": -9, "at": AT, "doc": None, "maybe": {"z": 1}},
               {"id": "c", "count": 1, "at": AT - timedelta(days=1), "doc": [], "maybe": "new"},
               {"id": "zz", "count": 99, "at": AT, "doc": None, "maybe": None}]
    try:
        await _reference_and(engine, schema, ROWS)
        async with read_model_engine(engine, "bulk_reference").begin() as conn:
            for row in changes:
                await conn.execute(update(things).where(things.c.id == row["id"], things.c.count < row["count"])
                                   .values(**{k: v for k, v in row.items() if k != "id"}))
        async with read_model_engine(engine, schema).begin() as conn:
            await update_rows(conn, things, changes, key="id", newer_than="count")

        reference = await _fetch(database_url, "bulk_reference")
        assert [(r[0], r[2]) for r in reference] == [("a", 5), ("b", -7), ("c", 1)]
        assert reference[0][4] is None and reference[0][8] is True  # set to NULL; SQL NULL where none_as_null
        assert await _fetch(database_url, schema) == reference
        async with engine.connect() as conn:
            with pytest.raises(ValueError, match="key"):
                await update_rows(conn, things, changes, key="nope")
            with pytest.raises(ValueError, match="guard"):
                await update_rows(conn, things, changes, key="id", newer_than="level")
    finally:
        await engine.dispose()


@pytest.mark.parametrize("schema", [READ_MODEL_SCHEMA, "bulk_rebuild"])
async def test_insert_together_writes_what_insert_rows_writes_per_table(database_url: str, schema: str) -> None:
    """Two tables in one statement (the parameters of the second numbered after the first's), a conflict skipped
    where asked, rows for none of a table's rows left out."""
    engine = create_engine(database_url)
    tagged = [{"thing_id": "a", "label": "red", "meta": {"by": "x"}}, {"thing_id": "c", "label": "blue", "meta": None}]
    try:
        await _reference_and(engine, schema, ROWS[:1])
        async with read_model_engine(engine, "bulk_reference").begin() as conn:
            await insert_rows(conn, things, ROWS, on_conflict_do_nothing=True)
            await insert_rows(conn, labels, tagged)
        async with read_model_engine(engine, schema).begin() as conn:
            await insert_together(conn, Rows(things, [], on_conflict_do_nothing=True),
                                  Rows(things, ROWS, on_conflict_do_nothing=True), Rows(labels, tagged))
            await insert_together(conn, Rows(labels, [{**tagged[0], "meta": None}], on_conflict_do_nothing=True))
            await insert_together(conn)

        assert [r[0] for r in await _fetch(database_url, schema)] == ["a", "b", "c"]
        assert await _fetch(database_url, schema) == await _fetch(database_url, "bulk_reference")
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            written = {name: [tuple(r) for r in await conn.fetch(
                f'select thing_id, label, meta::text from "{name}".bulk_labels order by 1, 2')]
                for name in ("bulk_reference", schema)}
        finally:
            await conn.close()
        assert written[schema] == written["bulk_reference"] == [("a", "red", '{"by": "x"}'), ("c", "blue", "null")]
        async with engine.connect() as conn:
            with pytest.raises(ValueError, match="once"):
                await insert_together(conn, Rows(labels, tagged[:1]), Rows(labels, tagged[1:]))
    finally:
        await engine.dispose()


async def _labels(url: str, *schemas: str) -> dict[str, list[tuple]]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return {name: [tuple(r) for r in await conn.fetch(
            f'select thing_id, label, meta::text from "{name}".bulk_labels order by 1, 2')] for name in schemas}
    finally:
        await conn.close()


async def test_copy_rows_writes_what_insert_rows_writes_in_the_transaction(database_url: str) -> None:
    """Two tables, JSON null and SQL NULL, a default, a naive datetime, an array; then a row that conflicts fails
    the COPY, and a transaction rolled back after a COPY leaves none of its rows."""
    engine = create_engine(database_url)
    tagged = [{"thing_id": "a", "label": "red", "meta": {"by": "x"}}, {"thing_id": "c", "label": "blue", "meta": None}]
    rows = [*ROWS, {**ROWS[0], "id": "naive", "at": datetime(2026, 3, 1, 9, 30)}]
    try:
        await _reference_and(engine, "bulk_copied")
        async with read_model_engine(engine, "bulk_reference").begin() as conn:
            await insert_rows(conn, things, rows)
            await insert_rows(conn, labels, tagged)
        async with read_model_engine(engine, "bulk_copied").begin() as conn:
            await copy_rows(conn, Rows(things, rows), Rows(labels, []), Rows(labels, tagged))
            await copy_rows(conn)

        copied = await _fetch(database_url, "bulk_copied")
        assert [r[0] for r in copied] == ["a", "b", "c", "naive"] and copied[3][4] == AT
        assert copied == await _fetch(database_url, "bulk_reference")
        written = await _labels(database_url, "bulk_reference", "bulk_copied")
        assert written["bulk_copied"] == written["bulk_reference"] == [("a", "red", '{"by": "x"}'), ("c", "blue", "null")]

        async with read_model_engine(engine, "bulk_copied").connect() as conn:
            with pytest.raises(ValueError, match="conflict"):
                await copy_rows(conn, Rows(labels, tagged, on_conflict_do_nothing=True))
            with pytest.raises(asyncpg.UniqueViolationError):
                async with conn.begin():
                    await copy_rows(conn, Rows(labels, [{**tagged[0], "label": "new"}, tagged[1]]))
        async with read_model_engine(engine, "bulk_copied").connect() as conn:
            async with conn.begin() as transaction:
                await copy_rows(conn, Rows(labels, [{**tagged[0], "label": "green"}]))
                await transaction.rollback()
        assert (await _labels(database_url, "bulk_copied"))["bulk_copied"] == written["bulk_reference"]
    finally:
        await engine.dispose()


async def test_a_naive_datetime_is_written_as_utc_and_an_unknown_type_is_refused(database_url: str) -> None:
    engine = create_engine(database_url)
    row = {**ROWS[0], "id": "naive", "at": datetime(2026, 3, 1, 9, 30)}
    try:
        await _reference_and(engine, "bulk_naive")
        async with read_model_engine(engine, "bulk_naive").begin() as conn:
            await insert_rows(conn, things, [row])
            with pytest.raises(TypeError, match="timedelta"):
                await insert_rows(conn, things, [{**row, "id": "later", "at": timedelta(hours=1)}])
        assert (await _fetch(database_url, "bulk_naive"))[0][4] == AT
    finally:
        await engine.dispose()


async def test_copy_records_writes_tuples_as_they_are_in_the_transaction(database_url: str) -> None:
    """What `copy_rows` writes from dicts, `copy_records` writes from tuples (a JSON column's value as its text)."""
    engine = create_engine(database_url)
    tagged = [{"thing_id": "a", "label": "red", "meta": {"by": "x"}}, {"thing_id": "c", "label": "blue", "meta": None}]
    try:
        await _reference_and(engine, "bulk_tuples")
        async with read_model_engine(engine, "bulk_reference").begin() as conn:
            await copy_rows(conn, Rows(labels, tagged))
        async with read_model_engine(engine, "bulk_tuples").connect() as conn:
            async with conn.begin() as transaction:
                await copy_records(conn, labels, ("thing_id", "label", "meta"), [("z", "gone", "null")])
                await transaction.rollback()
            async with conn.begin():
                await copy_records(conn, labels, ("label", "thing_id", "meta"),
                                   [("red", "a", '{"by": "x"}'), ("blue", "c", "null")])
                await copy_records(conn, labels, ("thing_id", "label"), [])
        written = await _labels(database_url, "bulk_reference", "bulk_tuples")
        assert written["bulk_tuples"] == written["bulk_reference"] == [("a", "red", '{"by": "x"}'), ("c", "blue", "null")]
    finally:
        await engine.dispose()
