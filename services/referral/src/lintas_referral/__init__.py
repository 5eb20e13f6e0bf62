"""Referral: routes each claim to a legal partner in the right country and manages the handoff."""
