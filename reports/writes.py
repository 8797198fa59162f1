"""The report service's writes as few plain-SQL statements: a report's call log, cache and report row.

Building INSERTs through the ORM costs far more CPU than the database needs to run them, and a batch
runs these for every lead. Values are prepared by the model fields themselves (`get_db_prep_save`),
so what is stored is what the ORM would store. The statements of one write go as a single statement
(data-modifying CTEs), atomic without a transaction block.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connections, models
from psycopg import _queries as psycopg_queries

# psycopg caches how it splits a statement around its placeholders only for statements of at most 50
# parameters (its MAX_CACHED_STATEMENT_PARAMS); a report's writes reach ~110 (cache rows and call log in
# one statement), for every lead of a batch. Without the cache each is parsed again every time.
if psycopg_queries.MAX_CACHED_STATEMENT_PARAMS < 200:
    psycopg_queries.MAX_CACHED_STATEMENT_PARAMS = 200


@dataclass(frozen=True)
class Statement:
    """One INSERT or UPDATE: its SQL and parameters."""

    sql: str
    params: list


def insert(
    objs: list[models.Model], *, conflict: tuple[str, ...] = (), update: tuple[str, ...] = ()
) -> Statement:
    """An INSERT of `objs` (one model), every concrete field but the primary key.

    With `conflict` (the columns of a unique constraint), a row that exists gets the `update` fields
    from the new one instead (ON CONFLICT ... DO UPDATE, on both databases).
    """
    # The connection itself rather than the `connection` proxy, which looks it up on every attribute.
    connection = connections[DEFAULT_DB_ALIAS]
    model = type(objs[0])
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    quote = connection.ops.quote_name
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(field.column) for field in fields)
    # Table and column names from the model, quoted; every value is a parameter.
    sql = f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * len(objs))}"  # noqa: S608
    if conflict:
        updates = ", ".join(f"{quote(name)} = excluded.{quote(name)}" for name in update)
        sql += f" ON CONFLICT ({', '.join(quote(name) for name in conflict)}) DO UPDATE SET {updates}"
    params = [
        field.get_db_prep_save(field.pre_save(obj, add=True), connection) for obj in objs for field in fields
    ]
    return Statement(sql, params)


def run(inserts: list[Statement], *, returning_id: bool = False) -> int | None:
    """Run the statements atomically; with `returning_id`, the id of the (single) row the last one
    inserts."""
    if not inserts:
        return None
    connection = connections[DEFAULT_DB_ALIAS]
    last = inserts[-1]
    suffix = " RETURNING id" if returning_id else ""
    ctes = ", ".join(f"w{n} AS ({statement.sql})" for n, statement in enumerate(inserts[:-1]))
    sql = (f"WITH {ctes} " if ctes else "") + last.sql + suffix
    params = [param for statement in inserts for param in statement.params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0] if returning_id else None
