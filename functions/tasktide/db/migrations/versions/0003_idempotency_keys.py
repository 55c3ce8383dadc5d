"""idempotency keys: one row per (user, Idempotency-Key) with the request's fingerprint and stored response

Table `idempotency_keys` (tasktide.db.idempotency): `state` in_flight / committed / completed, `status`,
`headers` (JSON text) and `body` of the stored response, `created_at` (retention) and `locked_until` (an
in-flight claim older than this was abandoned).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 06:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tasktide.db.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("headers", sa.Text(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", tasktide.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("locked_until", tasktide.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "key", name=op.f("pk_idempotency_keys")),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index("ix_idempotency_keys_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_idempotency_keys_created_at")
    op.drop_table("idempotency_keys")
