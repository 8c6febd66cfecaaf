"""Replicas on one database: which app process streams a reply, when each process was last heard from, and the
messages sent in the last minute by each rate-limited key, and the review page's sign-ins (shared by replicas)."""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.add_column("chat_conversations", sa.Column("replica", sa.String(255), nullable=True))
    op.create_index("ix_chat_conversations_status", "chat_conversations", ["status"])
    op.create_table(
        "chat_replicas",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("seen", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "chat_sends",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_chat_sends_key_at", "chat_sends", ["key", "at"])
    op.create_table(
        "chat_signins",
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
    )
