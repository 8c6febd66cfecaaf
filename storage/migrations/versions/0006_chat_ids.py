"""The id a /api/chat client gave its chat (useChat's), beside the id the store keys it by."""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.add_column("chat_conversations", sa.Column("chat_id", sa.String(255), nullable=True))
