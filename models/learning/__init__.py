"""Learning: required hours per school year, the hours ledger, online-lesson progress, certificates.

Owns the per-district requirement (class hours per tier and school year), the append-only ledger of
credits (each with a unique source key, so nothing counts twice), verified watch time of online
micro-lessons (heartbeats absorbed in Redis, flushed to PostgreSQL in batches; completions written at
once), and the completion certificate (结业证书) issued once per parent and school year.
"""
