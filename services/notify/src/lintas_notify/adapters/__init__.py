"""Notify's adapters: MongoDB and SMS providers."""
