"""limen's database: SQLAlchemy models, the engine, and Alembic migrations run at start-up."""

from limen.db.database import Database
from limen.db.models import Base, Role

__all__ = ["Base", "Database", "Role"]
