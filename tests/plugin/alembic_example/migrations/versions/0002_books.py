"""books, and a seed author

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade():
    op.create_table(
        "books",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("author_id", sa.Integer, sa.ForeignKey("authors.id"), nullable=False),
        sa.Column("isbn", sa.String(20), nullable=False, unique=True),
    )
    op.execute("INSERT INTO authors (id, name) VALUES (1, 'seed')")


def downgrade():
    op.drop_table("books")
