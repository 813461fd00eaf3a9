"""Alembic's environment for limen: migrations run on the connection :meth:`Database.migrate` passes in.

limen never runs Alembic from a command line with an ini file, so nothing here configures logging.
"""

from __future__ import annotations

from alembic import context

from limen.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("limen's migrations run through limen.db.Database.migrate(), which passes a connection")

# render_as_batch: SQLite cannot ALTER most things; batch mode copies the table instead.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
