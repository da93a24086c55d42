"""Test support shared by the tiers (importable as ``support`` from the tests, ``tests.support`` from the root)."""
