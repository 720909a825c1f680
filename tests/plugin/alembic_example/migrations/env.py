"""alembic's env.py with the shared-connection pattern: a connection handed over in
``config.attributes["connection"]`` is used as it is, else an engine is made from ``sqlalchemy.url``."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)


def run_migrations(connection):
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    engine = engine_from_config(
        config.get_section(config.config_ini_section), "sqlalchemy.", poolclass=pool.NullPool
    )
    with engine.connect() as connection:
        run_migrations(connection)
