"""The domain, one package per area. Services never commit: the caller's transaction does."""
