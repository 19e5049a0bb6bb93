"""Password hashes and random secrets.

Passwords are hashed with argon2id (argon2-cffi's defaults: RFC 9106's second recommended profile); the stored
text carries its own parameters, so stronger defaults later rehash a password at its next login.

API tokens, session ids and pairing codes are random; only their SHA-256 digest is stored. Their entropy (256 bits
for tokens and sessions; 40 bits for a pairing code valid ten minutes, single use, behind a rate limit) makes a
plain digest enough: nothing to salt, and a lookup by digest compares no secret byte by byte.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_PREFIX = "kgt_"  # recognisable in a leaked text (secret scanners), never part of what is hashed differently
# 24 letters without I and O, 8 digits without 0 and 1: nothing to misread on a wall screen across the room
PAIRING_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
PAIRING_CODE_LENGTH = 8
MIN_PASSWORD_LENGTH = 10


class Passwords:
    """Hashes and verifies passwords; an unknown user costs as long as a wrong password (a verification against
    a dummy hash made once), so timing does not tell which user names exist."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored` (None: no such user, or no password; always False)."""
        dummy = stored is None
        if stored is None:
            if self._dummy is None:
                self._dummy = self.hasher.hash(new_secret())
            stored = self._dummy
        try:
            matches = self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
        return matches and not dummy

    def outdated(self, stored: str) -> bool:
        """Whether the hash was made with weaker parameters than today's (rehash at the next login)."""
        return self.hasher.check_needs_rehash(stored)


def new_token() -> str:
    """A new API token as shown (once) to its owner."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_secret() -> str:
    """A session id or a CSRF token."""
    return secrets.token_urlsafe(32)


def new_pairing_code() -> str:
    return "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(PAIRING_CODE_LENGTH))


def normal_pairing_code(text: str) -> str:
    """A code as typed (lower case, spaces, a dash in the middle) in the form it was made."""
    return "".join(ch for ch in text.upper() if ch not in " -")


def digest(secret: str) -> str:
    """What is stored of a token, session id or pairing code."""
    return hashlib.sha256(secret.encode()).hexdigest()
