"""Alembic environment: the engine comes from `opensphere.service.storage.migrate`."""

from alembic import context

from opensphere.service.error_reports import models as error_report_models
from opensphere.service.storage.models import Base

# Domain packages keep their own tables; importing them registers them with Base.
assert error_report_models

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
