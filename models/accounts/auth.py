"""Logging in and staying logged in: WeChat login, password login, refresh-token rotation, logout."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from infra.errors import ValidationFailed
from infra.security import (
    DUMMY_PASSWORD_HASH,
    FieldCipher,
    TokenSigner,
    hash_password,
    hash_token,
    new_refresh_token,
    verify_password,
)
from infra.wechat import WechatIdentity
from models.accounts.errors import InvalidCredentials, InvalidRefreshToken, RefreshTokenReused
from models.accounts.lockout import LoginLockout
from models.accounts.tables import AuditLog, RefreshToken, User, WechatSession
from models.base import Change, note_change


@dataclass(frozen=True)
class IssuedTokens:
    user_id: uuid.UUID
    session_id: uuid.UUID
    access_token: str
    refresh_token: str
    expires_in: int


def audit(
    session: AsyncSession,
    action: str,
    *,
    actor: uuid.UUID | None,
    school_id: uuid.UUID | None = None,
    target_type: str | None = None,
    target_id: object = None,
    **detail: object,
) -> None:
    session.add(
        AuditLog(
            action=action,
            actor_user_id=actor,
            school_id=school_id,
            target_type=target_type,
            target_id=str(target_id) if target_id is not None else None,
            detail=detail,
        )
    )


async def wechat_login(session: AsyncSession, identity: WechatIdentity, cipher: FieldCipher) -> User:
    """Find or create the user behind a WeChat openid and keep their session_key, encrypted."""
    user = (
        await session.execute(select(User).where(User.wechat_openid == identity.openid))
    ).scalar_one_or_none()
    if user is None:
        # Two first logins racing for one openid: the unique index lets exactly one insert win.
        inserted = await session.execute(
            insert(User)
            .values(
                id=uuid.uuid4(),
                wechat_openid=identity.openid,
                wechat_unionid=identity.unionid,
                display_name="",
            )
            .on_conflict_do_nothing(index_elements=[User.wechat_openid])
            .returning(User.id)
        )
        new_id = inserted.scalar_one_or_none()
        user = (await session.execute(select(User).where(User.wechat_openid == identity.openid))).scalar_one()
        if new_id is not None:
            audit(session, "user.created", actor=user.id, target_type="user", target_id=user.id, via="wechat")
    if user.disabled_at is not None:
        raise InvalidCredentials("账号已停用")
    sealed = cipher.encrypt(identity.session_key, context=f"wechat_session:{user.id}")
    await session.execute(
        insert(WechatSession)
        .values(user_id=user.id, session_key_encrypted=sealed)
        .on_conflict_do_update(
            index_elements=[WechatSession.user_id],
            set_={"session_key_encrypted": sealed, "updated_at": datetime.now().astimezone()},
        )
    )
    return user


async def password_login(
    session: AsyncSession,
    username: str,
    password: str,
    *,
    address: str,
    lockout: LoginLockout,
    now: datetime,
) -> User:
    """The same answer, in about the same time, for an unknown username, a wrong password and a disabled
    account: 401 invalid_credentials, each counted towards a lockout of this username from this address
    (then 429 account_locked, for every one of them alike)."""
    attempt = lockout.attempt(username, address)
    await lockout.check(attempt, now.timestamp())
    user = (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()
    # Argon2 runs whatever the account, so timing reveals no usernames; it takes a good fraction of a
    # second of CPU, so it runs off the event loop, which would otherwise stall every other request.
    stored = user.password_hash if user is not None and user.password_hash else DUMMY_PASSWORD_HASH
    matches = await asyncio.to_thread(verify_password, stored, password)
    if user is None or user.password_hash is None or user.disabled_at is not None or not matches:
        if await lockout.failed(attempt, now.timestamp()) and user is not None:
            audit(session, "user.locked", actor=None, target_type="user", target_id=user.id, address=address)
        raise InvalidCredentials()
    await lockout.succeeded(attempt)
    audit(session, "login.password", actor=user.id)
    return user


MIN_PASSWORD_LENGTH = 10  # as for staff accounts (schemas.StaffAccountIn)


async def change_password(
    session: AsyncSession, user_id: uuid.UUID, current: str, new: str, *, now: datetime
) -> User:
    """The owner's new password, after proving the current one. Every login of the account ends (its
    refresh-token families are revoked), so whoever knew the old password is signed out."""
    user = (await session.execute(select(User).where(User.id == user_id).with_for_update())).scalar_one()
    if user.password_hash is None or not await asyncio.to_thread(
        verify_password, user.password_hash, current
    ):
        raise ValidationFailed("当前密码不正确", code="wrong_password")
    if len(new) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(f"新密码至少 {MIN_PASSWORD_LENGTH} 个字符", code="password_too_short")
    if new == current:
        raise ValidationFailed("新密码不能与当前密码相同", code="password_unchanged")
    user.password_hash = await asyncio.to_thread(hash_password, new)
    user.password_change_required = False
    families = await session.execute(
        select(RefreshToken.family_id)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .distinct()
    )
    for family in families.scalars().all():
        await revoke_family(session, family, now=now)
    audit(session, "password.changed", actor=user.id, target_type="user", target_id=user.id)
    return user


async def create_password_user(
    session: AsyncSession, username: str, password: str, display_name: str
) -> User:
    password_hash = await asyncio.to_thread(hash_password, password)  # off the event loop, as above
    user = User(username=username, password_hash=password_hash, display_name=display_name)
    session.add(user)
    await session.flush()
    return user


async def open_session(
    session: AsyncSession, user_id: uuid.UUID, signer: TokenSigner, *, refresh_ttl: int, now: datetime
) -> IssuedTokens:
    family = uuid.uuid4()
    return await _issue(session, user_id, family, signer, refresh_ttl=refresh_ttl, now=now)


async def _issue(
    session: AsyncSession,
    user_id: uuid.UUID,
    family: uuid.UUID,
    signer: TokenSigner,
    *,
    refresh_ttl: int,
    now: datetime,
) -> IssuedTokens:
    token, token_hash = new_refresh_token()
    session.add(
        RefreshToken(
            family_id=family,
            user_id=user_id,
            token_hash=token_hash,
            expires_at=now + timedelta(seconds=refresh_ttl),
        )
    )
    access = signer.issue(str(user_id), str(family), now=now.timestamp())
    return IssuedTokens(user_id, family, access, token, signer.ttl)


async def rotate_refresh_token(
    session: AsyncSession, token: str, signer: TokenSigner, *, refresh_ttl: int, now: datetime
) -> IssuedTokens:
    """Trade a refresh token for a new pair. A token used twice means it leaked: the family dies."""
    row = (
        await session.execute(
            select(RefreshToken).where(RefreshToken.token_hash == hash_token(token)).with_for_update()
        )
    ).scalar_one_or_none()
    if row is None or row.expires_at <= now:
        raise InvalidRefreshToken()
    if row.used_at is not None or row.revoked_at is not None:
        await revoke_family(session, row.family_id, now=now)
        audit(
            session,
            "session.refresh_reused",
            actor=row.user_id,
            target_type="session",
            target_id=row.family_id,
        )
        raise RefreshTokenReused(str(row.family_id))
    user = await session.get(User, row.user_id)
    if user is None or user.disabled_at is not None:
        raise InvalidRefreshToken()
    row.used_at = now
    return await _issue(session, row.user_id, row.family_id, signer, refresh_ttl=refresh_ttl, now=now)


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, *, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    note_change(session, Change.revoked_session, family_id)
