"""Bundles in registries: push, pull, and the deltas between versions."""
