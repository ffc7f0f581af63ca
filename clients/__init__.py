"""Clients of the gateway's APIs, for merchants' developers (no Django needed)."""
