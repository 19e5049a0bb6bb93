"""Usage billing: pure functions from the state engine's events to ledger entries and monthly statements.

    money.py        exact decimal money in the site currency and the one rounding rule
    attribution.py  which partner and project a job belongs to (rules on job names)
    periods.py      local days and months; splitting time at midnight; the month an entry is billed in
    sessions.py     usage sessions folded from `state`, `job_start` and `job_end` events
    ledger.py       append-only ledger entries with idempotency keys; compensating corrections
    rates.py        the rate card and prices that apply to a machine and a partner tier
    statement.py    a partner's statement for a month, and its CSV
    persist.py      the ledger's SQLite tables in the business store; closing a month
    catalog.py      partners, projects, users and rate cards changed through the API, audited, valid from a time
    restarts.py     a gateway restart in the middle of a job: restart marks, re-announced jobs continue
    service.py      the ledger at runtime: entries from the events as they happen, replay at start-up, assign
    documents.py    a statement as a document (CSV, HTML, PDF; Russian and English): html.py, pdf.py
    export.py       the ledger as InfluxDB `usage` points with partner and project tags
    cli.py          `kartech billing statement|unattributed|partners list|rates list|close`

The maths (attribution, periods, sessions, ledger, rates, statement, restarts) read no clock and do no I/O;
times are passed in as UTC nanoseconds.
"""
