"""Alembic's alembic_version table keeps the schema's version now: the hand-written chat_meta goes."""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.drop_table("chat_meta")
