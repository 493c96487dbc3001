"""The points ledger: accounts, append-only entries, points rules and the daily caps.

``models`` (tables), ``services`` (post, reverse, balances, verify),
``points`` (the rule in force, scoring, daily totals), ``rules`` (versioning),
``statements`` (a household's entries), ``append_only`` (the triggers that refuse
edits), ``cli`` (``sortpoint ledger|rules``).  Uses ``registry`` and ``core``.
"""
