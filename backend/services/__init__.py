"""Services: the only code that reads and writes the database for a use case.

Each public function takes the session of a transaction the caller opened with
``db.begin()`` (one command or request = one transaction), raises
``backend.errors`` domain errors, and never commits by itself.
"""
