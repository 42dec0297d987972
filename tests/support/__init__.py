"""Helpers that start the real servers the tests need, on loopback, and stop them."""
