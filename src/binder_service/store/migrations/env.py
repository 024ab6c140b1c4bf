"""Alembic environment: always run programmatically (binder_service.store.migrate), on a given connection."""

from __future__ import annotations

from alembic import context

from binder_service.store.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table="binder_service_schema",
    render_as_batch=True,  # SQLite alters tables by copying them
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
