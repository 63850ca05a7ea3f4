"""Cogs: one per area, each loaded as an extension by the client."""
