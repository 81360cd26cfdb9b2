"""Clients for the external APIs helpctl talks to, one module per service."""
