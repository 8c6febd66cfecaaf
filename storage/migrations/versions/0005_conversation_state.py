"""What a conversation's next turn needs beyond its messages: its tool results and the calls waiting for Run or Skip."""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.add_column("chat_conversations", sa.Column("state", sa.JSON, nullable=True))
