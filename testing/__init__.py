"""Helpers that the tests and scripts/ share: real registries, real stubs, real roots, fault injection."""
