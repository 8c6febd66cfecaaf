"""A comment on a rating."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("chat_turns", sa.Column("comment", sa.Text))
