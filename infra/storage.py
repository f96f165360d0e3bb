"""Where uploaded files live: outside the database, behind a small interface. `LocalStore` keeps them in a
directory (under DATA_DIR by default); an S3-compatible store (Tencent COS, Aliyun OSS, MinIO) would
implement the same two methods."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"^[0-9a-f]{32}$")


class FileStore(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes | None: ...


class LocalStore:
    """One file per key in `root`; keys are hex ids drawn by the service, never a client's name."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError("storage keys are 32 hex characters")
        return self.root / key[:2] / key

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, self._path(key), data)

    async def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".part")
        temporary.write_bytes(data)
        os.replace(temporary, path)  # a reader never sees half a file
