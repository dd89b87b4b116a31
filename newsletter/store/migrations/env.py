"""Alembic environment: run with the connection ``store.migrate`` hands over (no alembic.ini)."""

from alembic import context

from newsletter.store.tables import metadata, ours

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, include_name=ours,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
