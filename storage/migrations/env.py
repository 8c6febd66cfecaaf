"""Alembic's entry point for the log's migrations: run on the connection storage.logs.migrate() hands it."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()
