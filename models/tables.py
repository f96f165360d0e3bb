"""Imports every area's tables so the metadata (and Alembic) sees all of them."""

from models.accounts import tables as accounts_tables
from models.audit import tables as audit_tables
from models.catalog import tables as catalog_tables
from models.evening_classes import tables as evening_class_tables
from models.home_visits import tables as home_visit_tables
from models.idempotency import tables as idempotency_tables
from models.learning import tables as learning_tables
from models.notifications import tables as notifications_tables
from models.surveys import tables as survey_tables

__all__ = [
    "accounts_tables",
    "audit_tables",
    "catalog_tables",
    "evening_class_tables",
    "home_visit_tables",
    "idempotency_tables",
    "learning_tables",
    "notifications_tables",
    "survey_tables",
]
