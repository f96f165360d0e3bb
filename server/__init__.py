"""Composition root: settings, infrastructure and the HTTP application. No business rules live here."""
