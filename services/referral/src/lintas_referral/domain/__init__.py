"""Referral's domain: where a claim goes and who takes it. Pure: no I/O."""
