"""Deposits: the record of every bag weighed at a kiosk, and how a kiosk's upload becomes one.

``models`` (the deposits table), ``ingest`` (the use case: checks, label claims,
scoring, caps, statuses), ``store`` (the SQL it runs), ``pg_one`` (PostgreSQL's
one-round-trip function for a single deposit).  The kiosk API calls it; the
audit and the desk will read what it recorded.  Uses ``ledger``, ``registry``, ``core``.
"""
