"""What every capability stands on: the database, the root errors, the model base, SQL and CLI helpers.

``core`` imports no capability package; everything else may import ``core``.
"""
