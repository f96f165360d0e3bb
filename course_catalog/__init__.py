"""The district-wide course catalogue as versioned data files.

`data/<tier>/<series>.yaml` each hold one series of courses; `schema.py` validates them and `loader.py`
reads the whole tree, naming the file and field of anything invalid. The database copy is synced from
here by `models.catalog` (at `make run` and by `scripts/sync_catalog.py`), keyed by each course's `key`,
so reloading is idempotent and ids stay stable.
"""
