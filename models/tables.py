"""Imports every area's tables so the metadata (and Alembic) sees all of them."""

from models.accounts import tables as accounts_tables

__all__ = ["accounts_tables"]
