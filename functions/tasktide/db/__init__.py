"""Persistence: SQLAlchemy models, engines, migrations and the repositories."""
