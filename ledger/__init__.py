"""The signed double-entry ledger, usable as a library.

It knows nothing of gRPC, participants' business roles or payment flows: it
opens a store, posts balanced entries, reads balances, seals every entry into
an RFC 9162 Merkle log, exports bundles, and verifies them offline.
"""

__version__ = "0.1.0"
