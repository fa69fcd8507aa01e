"""The backend-neutral row codec of archives and copies: each table as JSON lines (a
header naming its columns and their kinds, then one JSON array per row). Dates, bytes and
decimals are written as text and read back by kind, so an archive made on SQLite restores
on PostgreSQL and the reverse."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Boolean, Integer, MetaData, String, func, select, text

from tenantry.data.db import TenantDatabase
from tenantry.ops.errors import OperationFailed

# Rows a copy of the tenant need not carry: lock-outs, quota reservations of uploads in
# progress, one-time links (their snapshots are not carried either), where each token
# family's refreshes stand (a family without its row starts again from its token).
SKIPPED_TABLES = frozenset(
    ("login_failures", "upload_reservations", "one_time_links", "token_refreshes")
)
VERSION_TABLES = re.compile(r"alembic_version(_[a-z0-9_]+)?")
BATCH = 1000
SPOOL_BYTES = 8 * 1024 * 1024


def column_kind(column) -> str:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return "plain"
    return {
        dt.datetime: "datetime",
        dt.date: "date",
        dt.time: "time",
        bytes: "bytes",
        Decimal: "decimal",
    }.get(python_type, "plain")


def encode_value(value, kind: str):
    if value is None or kind == "plain":
        return value
    if kind == "bytes":
        return base64.b64encode(value).decode()
    if kind == "decimal":
        return str(value)
    return value.isoformat()


def _decode(value, kind: str, column):
    if value is None or kind == "plain":
        return value
    if kind == "bytes":
        return base64.b64decode(value)
    if kind == "decimal":
        return Decimal(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "time":
        return dt.time.fromisoformat(value)
    moment = dt.datetime.fromisoformat(value)
    # The platform stores UTC. PostgreSQL keeps the zone; SQLite gives it back naive.
    if getattr(column.type, "timezone", False):
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def reflect_tables(connection, schema: str | None):

    metadata = MetaData()
    metadata.reflect(connection, schema=schema)
    return metadata


def load_tables(
    database: TenantDatabase,
    tables: list[tuple[str, Path]],
    sequences: dict[str, dict],
    check_row: Callable[[str, dict], str | None] = lambda table, row: None,
) -> None:
    """Insert the rows of each JSON-lines table file into the (migrated, empty) database,
    parents before children, in one transaction; then set the id counters past every id
    the tenant ever handed out. Every row is checked first: each value against its
    column (its type, a whole number within 64 bits, text without NUL), then the row by
    ``check_row`` (the rules of the module that owns the table; a problem, or None).

    :raises OperationFailed: naming the first row that fails (nothing is committed).
    """
    with database.engine.begin() as connection:
        metadata = reflect_tables(connection, database.schema)
        by_name = tables_by_name(metadata)
        order = {table.name: index for index, table in enumerate(metadata.sorted_tables)}
        for name, _path in tables:
            if name not in by_name:
                raise OperationFailed(
                    f"the archive holds table {name}, and no installed endpoint module makes "
                    "it: install the module it came from"
                )
        for name, path in sorted(tables, key=lambda item: order[item[0]]):
            _load_table(connection, by_name[name], path, check_row)
        for name, _path in tables:
            _set_counter(connection, database, by_name[name], sequences.get(name))


def _set_counter(connection, database: TenantDatabase, table, recorded: dict | None) -> None:
    """The next id of ``table`` beyond its highest and beyond what the archive recorded."""

    columns = list(table.primary_key.columns)
    if len(columns) != 1 or not isinstance(columns[0].type, Integer):
        return
    column = columns[0]
    highest = connection.execute(select(func.max(column))).scalar() or 0
    if recorded and recorded.get("column") == column.name:
        highest = max(highest, recorded["value"])
    if highest <= 0:
        return
    if database.is_postgres:
        qualified = f'"{database.schema}"."{table.name}"'
        sequence = connection.execute(
            text("SELECT pg_get_serial_sequence(:table, :column)"),
            {"table": qualified, "column": column.name},
        ).scalar()
        if sequence:
            connection.execute(
                text("SELECT setval(:sequence, :value)"), {"sequence": sequence, "value": highest}
            )
    elif recorded:  # SQLite keeps counters only for AUTOINCREMENT tables; no key, so:
        updated = connection.exec_driver_sql(
            "UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (highest, table.name)
        )
        if not updated.rowcount:
            connection.exec_driver_sql(
                "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table.name, highest)
            )


def _load_table(connection, table, path: Path, check_row) -> None:
    with open(path, "rb") as lines:
        try:
            header = json.loads(lines.readline())
            names, kinds = header["columns"], header["kinds"]
            if len(names) != len(kinds):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise OperationFailed(f"database/{table.name}.jsonl has no valid header") from None
        for name in names:
            if name not in table.c:
                raise OperationFailed(f"table {table.name} has no column {name!r} here")
        columns = [table.c[name] for name in names]
        batch = []
        for number, line in enumerate(lines, start=2):
            try:
                values = json.loads(line)
                if not isinstance(values, list) or len(values) != len(names):
                    raise ValueError("wrong number of values")
                row = {
                    name: _decode(value, kind, column)
                    for name, value, kind, column in zip(names, values, kinds, columns, strict=True)
                }
                problem = _value_problem(row, columns) or check_row(table.name, row)
                if problem:
                    raise ValueError(problem)
            except (ValueError, TypeError, ArithmeticError) as exc:
                raise OperationFailed(
                    f"database/{table.name}.jsonl line {number} is invalid: {exc}"
                ) from None
            batch.append(row)
            if len(batch) >= BATCH:
                connection.execute(table.insert(), batch)
                batch = []
        if batch:
            connection.execute(table.insert(), batch)


# The widest whole number a column of either backend holds (PostgreSQL's BIGINT).
MAX_INTEGER = 2**63 - 1


def _value_problem(row: dict, columns) -> str | None:
    """What is wrong with a value for its column: text that is not text or holds NUL, a
    number that is not a whole number or does not fit in 64 bits, a flag not a flag."""
    for column in columns:
        value = row[column.name]
        if value is None:
            continue
        kind = column.type
        if isinstance(kind, Boolean):
            if not isinstance(value, bool):
                return f"{column.name} must be true or false"
        elif isinstance(kind, Integer):
            if isinstance(value, bool) or not isinstance(value, int):
                return f"{column.name} must be a whole number"
            if not -MAX_INTEGER <= value <= MAX_INTEGER:
                return f"{column.name} is out of range"
        elif isinstance(kind, String):
            if not isinstance(value, str):
                return f"{column.name} must be text"
            if "\x00" in value:
                return f"{column.name} holds NUL"
    return None


def tables_by_name(metadata) -> dict:
    return {table.name: table for table in metadata.sorted_tables}


def count_rows(database: TenantDatabase, table: str) -> int:

    name = f'"{database.schema}".{table}' if database.is_postgres else table
    with database.engine.connect() as connection:
        return connection.execute(text(f"SELECT count(*) FROM {name}")).scalar()  # noqa: S608
