"""Probes: turn responses of external services into findings for a case."""
