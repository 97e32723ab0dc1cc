"""Adapters: the only code that does I/O. Each takes its client injected and raises domain errors."""
