"""Many rows into one table in one statement: `INSERT ... SELECT FROM jsonb_to_recordset($1::jsonb)`, optionally
`ON CONFLICT (key) DO UPDATE` every other column (`upsert_rows`: a batch's changed rows written as they now are),
and `UPDATE ... FROM jsonb_to_recordset(...)` (`update_rows`: the same columns of many existing rows set, each to its
own values); `insert_together` writes several tables' rows in one statement (one round trip); `copy_rows` writes
them with COPY, for a load into fresh tables, where no row can conflict, and `copy_records` tuples as they are.

A projection's batch builds its rows as dicts (the one definition of a row, live or rebuild) and hands
them here instead of to SQLAlchemy's executemany, whose per-row parameter processing dominated a replay.
The rows travel as one JSON document (orjson), which PostgreSQL reads into the columns' types: cheaper for the
client than an array parameter per column, which asyncpg type-checks and encodes element by element.
Values are written as SQLAlchemy would write them: the table's schema follows the connection's
`schema_translate_map` (a rebuild's schema), JSON columns keep None as JSON null unless the column says
`none_as_null`, a naive datetime is UTC (asyncpg's COPY reads it as local time: the same only where TZ is UTC, as in
our images), and a column missing from the rows takes its scalar default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import JSON, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

_DIALECT = postgresql.dialect()


def quote_name(name: str) -> str:
    """An identifier quoted for SQL written by hand."""
    return '"' + name.replace('"', '""') + '"'


def _recordset(schema: str | None, table: Table, columns: tuple[str, ...], first: int = 1,
               defaults: tuple[str, ...] = ()) -> tuple[str, str, dict[str, str]]:
    """The quoted target table, `jsonb_to_recordset($first::jsonb) as u(col type, ...)` over `columns`, and each
    column's value: read from `u`, or for `defaults` (columns the rows leave out) a parameter of its own, numbered
    after the rows'. A JSON null reaches a JSON column as SQL NULL, so where the column keeps None as JSON null
    (SQLAlchemy's default) the value is coalesced back to it."""
    names, values = [], {}
    for name in columns:
        column = table.c[name]
        sql_type = column.type.compile(dialect=_DIALECT)
        names.append(f"{quote_name(name)} {sql_type}")
        value = f"u.{quote_name(name)}"
        if isinstance(column.type, JSON) and not column.type.none_as_null:
            value = f"coalesce({value}, 'null'::{sql_type})"
        values[name] = value
    for i, name in enumerate(defaults, start=first + 1):
        column = table.c[name]
        sql_type = column.type.compile(dialect=_DIALECT)
        values[name] = f"${i}::text::{sql_type}" if isinstance(column.type, JSON) else f"${i}::{sql_type}"
    return _qualified(schema, table), f"jsonb_to_recordset(${first}::jsonb) as u({', '.join(names)})", values


@lru_cache(maxsize=256)
def _statement(schema: str | None, table: Table, columns: tuple[str, ...], on_conflict_do_nothing: bool,
               update_on_conflict: tuple[str, ...] = (), first: int = 1, defaults: tuple[str, ...] = ()) -> str:
    target, recordset, values = _recordset(schema, table, columns, first, defaults)
    return (f"insert into {target} ({', '.join(map(quote_name, values))}) select {', '.join(values.values())} "
            f"from {recordset}"
            + (" on conflict do nothing" if on_conflict_do_nothing else "")
            + (f" on conflict ({', '.join(map(quote_name, update_on_conflict))}) do update set "
               + ", ".join(f"{quote_name(c)} = excluded.{quote_name(c)}" for c in values if c not in update_on_conflict)
               if update_on_conflict else ""))


@lru_cache(maxsize=256)
def _update_statement(schema: str | None, table: Table, columns: tuple[str, ...], key: str,
                      newer_than: str | None) -> str:
    target, recordset, values = _recordset(schema, table, columns)
    return (f"update {target} as t set {', '.join(f'{quote_name(c)} = {values[c]}' for c in columns if c != key)} "
            f"from {recordset} where t.{quote_name(key)} = u.{quote_name(key)}"
            + (f" and t.{quote_name(newer_than)} < u.{quote_name(newer_than)}" if newer_than else ""))


def json_text(value: Any) -> str:
    """`value` as the text of one JSON parameter (`$n::jsonb`), the way this module writes a batch's rows (read back
    by `jsonb_to_recordset`, JSON columns' values nested as they are): orjson writes the lot in C, where an array
    parameter per column costs asyncpg a type check and an encoding per element (half of a replay's CPU). A Decimal
    is written as its exact text, a naive datetime as UTC, a key that is not a string as its text (as json.dumps
    does); another type orjson does not know is refused."""
    try:
        return orjson.dumps(value, default=_plain, option=orjson.OPT_NAIVE_UTC).decode()
    except orjson.JSONEncodeError:  # (the option for such keys is a third of the time of writing any document)
        return orjson.dumps(value, default=_plain, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC).decode()


def _json_parameter(column_type: JSON, value: Any) -> str | None:
    """A JSON column's value as a parameter's text: None is JSON null, or SQL NULL where the column says
    `none_as_null` (as SQLAlchemy writes it)."""
    if value is None:
        return None if column_type.none_as_null else "null"
    return json_text(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # PostgreSQL reads a numeric from it
    raise TypeError(f"{type(value).__name__} is not written by opsat.common.bulk")


async def insert_rows(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], *,
                      on_conflict_do_nothing: bool = False) -> None:
    """Insert `rows` (dicts with the same keys) into `table` with one statement."""
    await _write(conn, table, rows, on_conflict_do_nothing, ())


async def upsert_rows(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], *,
                      key: Sequence[str]) -> None:
    """Insert `rows`, or where a row with the same `key` columns exists, set its other columns to the row's, with
    one statement. A key must appear once among `rows` (PostgreSQL refuses to update a row twice)."""
    if not key or any(name not in table.c for name in key):
        raise ValueError(f"the key of an upsert into {table.name} names its columns")
    await _write(conn, table, rows, False, tuple(key))


async def update_rows(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], *, key: str,
                      newer_than: str | None = None) -> None:
    """Set the other columns of each existing row whose `key` equals a row's to that row's values, with one
    statement; with `newer_than`, only where the stored value of that column is below the row's (a monotone
    version: an older change never moves a row back). A key must appear once among `rows`; rows with no match
    change nothing."""
    if not rows:
        return
    if key not in rows[0] or (newer_than is not None and newer_than not in rows[0]):
        raise ValueError(f"rows updating {table.name} carry the key {key!r} and the guard {newer_than!r}")
    keys = _same_keys(table, rows)
    await conn.exec_driver_sql(_update_statement(_schema_of(conn, table), table, keys, key, newer_than),
                               (json_text(rows),))


def _same_keys(table: Table, rows: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    keys = tuple(rows[0])
    if any(len(row) != len(keys) or row.keys() != rows[0].keys() for row in rows):
        raise ValueError(f"rows for {table.name} must all have the same columns")
    return keys


def _schema_of(conn: AsyncConnection, table: Table) -> str | None:
    translate = conn.sync_connection.get_execution_options().get("schema_translate_map") or {}
    return translate.get(table.schema, table.schema)


def qualified_name(conn: AsyncConnection, table: Table) -> str:
    """The table's quoted name in SQL written by hand, in the schema the connection maps its schema to."""
    return _qualified(_schema_of(conn, table), table)


def _qualified(schema: str | None, table: Table) -> str:
    return f"{quote_name(schema)}.{quote_name(table.name)}" if schema else quote_name(table.name)


async def _write(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], on_conflict_do_nothing: bool,
                 update_on_conflict: tuple[str, ...]) -> None:
    if not rows:
        return
    columns, defaults = _columns_and_defaults(table, rows)
    await conn.exec_driver_sql(
        _statement(_schema_of(conn, table), table, columns, on_conflict_do_nothing, update_on_conflict, 1,
                   tuple(defaults)),
        (json_text(rows), *defaults.values()))


def _columns_and_defaults(table: Table, rows: Sequence[dict[str, Any]]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The columns of `rows` and, for the columns they leave out that have a scalar default, that default as a
    parameter (JSON serialised)."""
    return _same_keys(table, rows), _defaults(table, rows[0])


def _defaults(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    for column in table.columns:
        if column.name not in row and column.default is not None:
            if not column.default.is_scalar:
                raise ValueError(f"{table.name}.{column.name} has a computed default: give it in the rows")
            value = column.default.arg
            defaults[column.name] = _json_parameter(column.type, value) if isinstance(column.type, JSON) else value
    return defaults


@dataclass(frozen=True)
class Rows:
    """Rows (dicts with the same keys) to insert into one table, for `insert_together`."""

    table: Table
    rows: Sequence[dict[str, Any]]
    on_conflict_do_nothing: bool = False


async def insert_together(conn: AsyncConnection, *writes: Rows) -> None:
    """Each `Rows` into its table as `insert_rows` would, all in one statement: one round trip instead of one per
    table (every insert but the last in a WITH, each with its own parameters). All of them see the tables as they
    were before the statement, so no two may write one table, and none may rely on another's rows."""
    writes = tuple(w for w in writes if w.rows)
    if len({w.table for w in writes}) < len(writes):
        raise ValueError("insert_together writes each table once")
    statements: list[str] = []
    params: list[Any] = []
    for write in writes:
        columns, defaults = _columns_and_defaults(write.table, write.rows)
        statements.append(_statement(_schema_of(conn, write.table), write.table, columns,
                                     write.on_conflict_do_nothing, (), len(params) + 1, tuple(defaults)))
        params.extend((json_text(write.rows), *defaults.values()))
    if not statements:
        return
    *earlier, last = statements
    ctes = ", ".join(f"w{n} as ({sql})" for n, sql in enumerate(earlier))
    await conn.exec_driver_sql(f"with {ctes} {last}" if earlier else last, tuple(params))


async def copy_rows(conn: AsyncConnection, *writes: Rows) -> None:
    """Each `Rows` into its table with COPY (binary), in the connection's transaction: for a load into fresh tables,
    where no row can conflict (a conflict fails the COPY). PostgreSQL then reads each value in its column's binary
    form instead of a JSON document of the batch: half its time per row in a replay of submits, for a quarter more
    of the client's. Values are written as `insert_rows` writes them (JSON columns, defaults; naive datetimes where TZ is UTC)."""
    if any(w.on_conflict_do_nothing for w in writes):
        raise ValueError("COPY has no conflict handling: copy_rows writes rows that cannot conflict")
    writes = tuple(w for w in writes if w.rows)
    if writes:
        driver = await _in_transaction(conn)
        for write in writes:
            columns, defaults = tuple(write.rows[0]), _defaults(write.table, write.rows[0])
            await driver.copy_records_to_table(
                write.table.name, schema_name=_schema_of(conn, write.table), columns=[*columns, *defaults],
                records=_records(write.table, columns, write.rows, tuple(defaults.values())))


async def copy_records(conn: AsyncConnection, table: Table, columns: Sequence[str],
                       records: Sequence[tuple[Any, ...]]) -> None:
    """Tuples in `columns` order into `table` with COPY, in the connection's transaction, for many rows of a few
    columns: making each a dict for `copy_rows` first cost more than writing it. The values go as they are (a JSON
    column's as its text)."""
    if records:
        driver = await _in_transaction(conn)
        await driver.copy_records_to_table(table.name, schema_name=_schema_of(conn, table), columns=list(columns),
                                           records=records)


async def _in_transaction(conn: AsyncConnection) -> Any:
    """The asyncpg connection under `conn`, its transaction begun: SQLAlchemy's adapter sends BEGIN lazily, before the
    first statement it runs itself, so a COPY sent first on the raw connection would be committed on its own."""
    await conn.exec_driver_sql("select 1")
    return (await conn.get_raw_connection()).driver_connection


def _records(table: Table, columns: tuple[str, ...], rows: Sequence[dict[str, Any]], defaults: tuple[Any, ...]
             ) -> list[tuple[Any, ...]]:
    """The rows as tuples in `columns` order, then the defaults; JSON columns as their text. Rows with other keys
    than the first's are refused as `_same_keys` refuses them, for less: a row as long as the first that has all of
    its keys has no other (comparing the keys themselves was a twentieth of a rebuild lane's CPU)."""
    width = len(columns)
    if any(len(row) != width for row in rows):
        raise ValueError(f"rows for {table.name} must all have the same columns")
    values = itemgetter(*columns) if width > 1 else lambda row: (row[columns[0]],)
    json_columns = [(i, table.c[name].type) for i, name in enumerate(columns) if isinstance(table.c[name].type, JSON)]
    try:
        if not json_columns:
            return [values(row) + defaults for row in rows] if defaults else list(map(values, rows))
        records = []
        for row in rows:
            record = list(values(row))
            for i, column_type in json_columns:
                record[i] = _json_parameter(column_type, record[i])
            records.append((*record, *defaults))
        return records
    except KeyError:
        raise ValueError(f"rows for {table.name} must all have the same columns") from None
