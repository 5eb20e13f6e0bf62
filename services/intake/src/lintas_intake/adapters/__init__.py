"""Intake's adapters to MongoDB."""
