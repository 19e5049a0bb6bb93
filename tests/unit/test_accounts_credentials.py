"""Password hashes (argon2id) and the random secrets of accounts."""

from __future__ import annotations

from argon2 import PasswordHasher

from gateway.accounts.credentials import (
    PAIRING_ALPHABET,
    Passwords,
    digest,
    new_pairing_code,
    new_token,
    normal_pairing_code,
)

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def test_passwords_are_argon2id_hashes_with_a_salt_each() -> None:
    passwords = Passwords()  # the defaults the gateway uses
    first, second = passwords.hash("correct horse"), passwords.hash("correct horse")
    assert first.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert first != second
    assert passwords.verify(first, "correct horse")
    assert not passwords.verify(first, "correct horsE")
    assert not passwords.outdated(first)


def test_nothing_stored_or_a_broken_hash_never_verifies() -> None:
    passwords = Passwords(FAST)
    assert not passwords.verify(None, "")
    assert not passwords.verify(None, "anything")
    assert not passwords.verify("not a hash", "anything")


def test_a_hash_made_with_weaker_parameters_is_outdated() -> None:
    weak = Passwords(FAST).hash("correct horse")
    assert Passwords().outdated(weak)
    assert Passwords().verify(weak, "correct horse")  # still verifies until it is rehashed


def test_tokens_are_long_random_and_stored_as_their_digest() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(t.startswith("kgt_") and len(t) == 4 + 43 for t in tokens)
    token = next(iter(tokens))
    assert digest(token) != token
    assert len(digest(token)) == 64
    assert digest(token) == digest(str(token))


def test_pairing_codes_use_an_unambiguous_alphabet_and_are_read_loosely() -> None:
    codes = [new_pairing_code() for _ in range(200)]
    assert all(len(c) == 8 and set(c) <= set(PAIRING_ALPHABET) for c in codes)
    assert not set("IO01") & set(PAIRING_ALPHABET)
    assert len(PAIRING_ALPHABET) == 32  # 8 characters: 40 bits
    assert normal_pairing_code("k7qm-3xpa") == normal_pairing_code(" K7QM 3XPA ") == "K7QM3XPA"
