"""Usage billing: pure functions from the state engine's events to ledger entries and monthly statements.

    money.py        exact decimal money in the site currency and the one rounding rule
    attribution.py  which partner and project a job belongs to (rules on job names)
    periods.py      local days and months; splitting time at midnight; the month an entry is billed in
    sessions.py     usage sessions folded from `state`, `job_start` and `job_end` events
    ledger.py       append-only ledger entries with idempotency keys; compensating corrections
    rates.py        the rate card and prices that apply to a machine and a partner tier
    statement.py    a partner's statement for a month, and its CSV
    persist.py      the ledger's SQLite tables in the business store

Nothing here reads a clock or does I/O except persist.py; times are passed in as UTC nanoseconds.
"""
