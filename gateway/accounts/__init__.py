"""Accounts of the web app and the API: users with a role, their passwords, API tokens, browser sessions, kiosk
pairing codes and the audit log, kept in the business store (gateway/store.py).

- `credentials.py`: password hashing (argon2id) and the random secrets (tokens, session ids, pairing codes) with the
  digests they are stored as;
- `store.py`: the tables and every operation on them (`Accounts`);
- `limiter.py`: failed-attempt limits per user and per client address (in memory);
- `cli.py`: `kartech users add|list|revoke|passwd|role`.
"""
