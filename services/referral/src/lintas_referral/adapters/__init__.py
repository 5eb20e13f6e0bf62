"""Referral's adapters to MongoDB."""
