"""Intake: partner NGOs submit workers' cases and follow what happens to them."""
