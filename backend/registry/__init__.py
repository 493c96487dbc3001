"""The registry: communities, their categories and buildings, households, kiosks and bag labels.

``models`` (tables), ``services`` (create, find, import, register, disable),
``labels`` (issue, revoke, print the signed QR labels), ``cli`` (``sortpoint
community|building|household|kiosk|labels``).  Uses ``core`` only.
"""
