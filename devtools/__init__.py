"""Throwaway local servers and `make run`'s demo: tools for developers, not installed."""
