"""Idempotency-Key records kept with the writes they stand for (see handlers.base.idempotent)."""
