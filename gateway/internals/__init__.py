"""The dependencies' internals the gateway relies on, one module per library.

Whatever a library does not offer publicly but the gateway needs is reached
only through these modules, each with a test (tests/test_internals_*.py)
asserting the names still exist, so an upgrade that moves them fails there
rather than in production.
"""
