"""Alembic environment: runs on the connection `gigcx.store.database.upgrade_database` passes in."""

from alembic import context

from gigcx.store.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
