"""HTTP only: parse, authorise, call one service in one transaction, serialise. No SQL here."""
