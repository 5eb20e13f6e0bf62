"""Intake's domain: the case as an NGO submits and follows it. Pure: no I/O."""
