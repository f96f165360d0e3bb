"""Infrastructure: errors, settings, PostgreSQL, Redis, crypto, the clock, the WeChat gateway, group
commit, caches, the embedded servers. It imports nothing of ours; models and handlers stand on it."""
