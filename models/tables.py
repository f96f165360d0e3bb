"""Imports every area's tables so the metadata (and Alembic) sees all of them."""

from models.accounts import tables as accounts_tables
from models.catalog import tables as catalog_tables
from models.learning import tables as learning_tables

__all__ = ["accounts_tables", "catalog_tables", "learning_tables"]
