"""The first release's tables: turns with their settings and ratings, compare votes, and the version."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(  # where the hand-written migrations kept the schema's version
        "chat_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
    )
    op.create_table(
        "chat_turns",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("conversation", sa.String(36), nullable=False, index=True),
        sa.Column("session", sa.String(64), nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("ended", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model", sa.String(255), nullable=False, index=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("attachments", sa.JSON, nullable=False),
        sa.Column("reply", sa.Text, nullable=False),
        sa.Column("thinking", sa.Text, nullable=False),
        sa.Column("tool_steps", sa.JSON, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("telemetry", sa.JSON, nullable=False),
        sa.Column("notice", sa.Text, nullable=False),
        sa.Column("feedback", sa.Integer),
    )
    op.create_table(
        "chat_votes",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("session", sa.String(64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("a", sa.JSON, nullable=False),
        sa.Column("b", sa.JSON, nullable=False),
        sa.Column("vote", sa.String(8), nullable=False),
    )
