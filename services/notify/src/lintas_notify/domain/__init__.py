"""Notify's domain: SMS encoding, templates and the message record. Pure: no I/O."""
