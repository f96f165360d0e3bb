"""Password-login lockout, per account *and* address, with a backoff.

Counted in Redis under a hash of (username, client address), whether or not the username exists: an
unknown name locks exactly as a known one does, so the answer never tells which accounts exist; and
failures from one address never lock the account for everyone else (five wrong guesses from anywhere
used to lock an administrator out for 15 minutes). Each lockout in a row lasts twice the one before, up
to a cap (rules.lockout_seconds). Losing Redis loses only these counters, as it does rate-limit windows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis.asyncio import Redis

from infra.redis import Keys
from models.accounts.errors import AccountLocked
from models.accounts.rules import lockout_seconds

# Lockouts in a row are remembered this long: a day without one starts the backoff again.
LOCKOUTS_REMEMBERED_SECONDS = 24 * 3600


@dataclass(frozen=True)
class LoginLockout:
    redis: Redis
    keys: Keys
    max_failures: int
    base_seconds: int
    max_seconds: int

    @staticmethod
    def attempt(username: str, address: str) -> str:
        # Hashed: Redis keeps neither the names tried nor who tried them.
        return hashlib.sha256(f"{username}\n{address}".encode()).hexdigest()[:32]

    async def check(self, attempt: str, now: float) -> None:
        """AccountLocked (429, Retry-After) while this account is locked for this address."""
        until = await self.redis.get(self.keys.login_lock(attempt))
        if until is not None and float(until) > now:
            raise AccountLocked(int(float(until) - now) + 1)

    async def failed(self, attempt: str, now: float) -> bool:
        """Count a wrong password; True when it starts a lockout."""
        failures_key = self.keys.login_failures(attempt)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(failures_key)
            pipe.expire(failures_key, self.max_seconds)
            failures, _ = await pipe.execute()
        if int(failures) != self.max_failures:  # the one failure that reaches it locks, however many race
            return False
        lockouts_key = self.keys.login_lockouts(attempt)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(failures_key)
            pipe.incr(lockouts_key)
            pipe.expire(lockouts_key, LOCKOUTS_REMEMBERED_SECONDS)
            _, lockouts, _ = await pipe.execute()
        seconds = lockout_seconds(int(lockouts), self.base_seconds, self.max_seconds)
        await self.redis.set(self.keys.login_lock(attempt), str(now + seconds), ex=seconds + 1)
        return True

    async def succeeded(self, attempt: str) -> None:
        await self.redis.delete(self.keys.login_failures(attempt), self.keys.login_lockouts(attempt))
