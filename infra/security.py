"""Tokens, password hashes and field encryption.

- Access tokens are JWTs signed with HS256; verification accepts exactly the header this service
  issues (HS256, nothing else: no `alg` negotiation) and checks the HMAC in constant time.
- Refresh tokens are opaque random strings; only their SHA-256 is stored.
- Sensitive columns are AES-256-GCM encrypted with a key that lives in the environment, not the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import unicodedata
import uuid
from dataclasses import dataclass

import jwt
import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERIFIED_CACHE_SIZE = 50_000
JWT_ALGORITHM = "HS256"  # pinned: the verifier never trusts the token's own header
_password_hasher = PasswordHasher()


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    session_id: str
    expires_at: int


class TokenError(Exception):
    pass


class TokenSigner:
    def __init__(self, secret: str, issuer: str, ttl: int) -> None:
        self._secret = secret
        self._key = secret.encode()
        self._issuer = issuer
        self.ttl = ttl
        # The header of every token issue() makes; _verify() accepts this one and no other.
        self._header = jwt.encode({}, secret, algorithm=JWT_ALGORITHM).partition(".")[0]
        # Tokens whose signature and claims already checked out; a client presents the same token for
        # up to two hours, and verifying it again each time costs more than the rest of a cached GET.
        self._verified: dict[str, AccessClaims] = {}

    def issue(self, user_id: str, session_id: str, now: float) -> str:
        """`now` comes from the service's one clock (infra.clock), as for `verify`."""
        issued = int(now)
        payload = {
            "sub": user_id,
            "sid": session_id,
            "iss": self._issuer,
            "iat": issued,
            "exp": issued + self.ttl,
            "typ": "access",
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(payload, self._secret, algorithm=JWT_ALGORITHM)

    def verify(self, token: str, now: float) -> AccessClaims:
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = claims
        if claims.expires_at <= now:
            raise TokenError("Signature has expired")
        return claims

    def _verify(self, token: str) -> AccessClaims:
        """Accept exactly what issue() makes: its header byte for byte (so no algorithm is ever read
        from a token), an HMAC-SHA256 over header and payload matching the signature in constant time,
        then the claims. Tokens are issued with PyJWT; verifying them with its generic decode cost about
        90 µs here (it inspects the key and scans the token character by character on every call), and
        this runs for each token a process has not seen yet: in a sign-up rush, half the requests."""
        header, _, rest = token.partition(".")
        payload, _, signature = rest.partition(".")
        if header != self._header or not payload:
            raise TokenError("not a token of this service")
        try:
            signed = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            given = signature.encode("ascii")
        except UnicodeError as exc:
            raise TokenError("malformed token") from exc
        if not hmac.compare_digest(base64.urlsafe_b64encode(signed).rstrip(b"="), given):
            raise TokenError("Signature verification failed")
        try:
            claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError as exc:  # signed with our key, yet not JSON: never issued by us
            raise TokenError("malformed claims") from exc
        if not isinstance(claims, dict) or claims.get("iss") != self._issuer:
            raise TokenError("Invalid issuer")
        if claims.get("typ") != "access":
            raise TokenError("not an access token")
        sub, sid, exp, iat = (claims.get(name) for name in ("sub", "sid", "exp", "iat"))
        if not (isinstance(sub, str) and isinstance(sid, str) and type(exp) is int and type(iat) is int):
            raise TokenError("a required claim is missing or malformed")
        return AccessClaims(sub, sid, exp)


def new_refresh_token() -> tuple[str, str]:
    """Return (token given to the client, hash stored on the server)."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_binding_code() -> str:
    # 10 characters from an alphabet without look-alikes (0/O, 1/I/L): easy to type from a printed list.
    alphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(10))


def normalise_binding_code(code: str) -> str:
    # NFKC first: Chinese input methods type full-width letters, dashes and spaces (ＡＢ－ＣＤ).
    return unicodedata.normalize("NFKC", code).strip().upper().replace("-", "").replace(" ", "")


def hash_password(password: str) -> str:
    return _password_hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _password_hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# A real hash to verify against when the username does not exist, so timing does not reveal accounts.
DUMMY_PASSWORD_HASH = _password_hasher.hash("not-a-real-password")


class FieldCipher:
    """AES-256-GCM for columns holding sensitive data. Ciphertext = version byte | nonce | sealed."""

    VERSION = b"\x01"

    def __init__(self, key_b64: str) -> None:
        key = base64.urlsafe_b64decode(key_b64.encode())
        if len(key) != 32:
            raise ValueError("FIELD_ENCRYPTION_KEY must be 32 bytes, urlsafe-base64 encoded")
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, context: str) -> bytes:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return self.VERSION + nonce + sealed

    def decrypt(self, blob: bytes, context: str) -> str:
        if blob[:1] != self.VERSION:
            raise ValueError("unknown ciphertext version")
        return self._aead.decrypt(blob[1:13], blob[13:], context.encode()).decode()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
