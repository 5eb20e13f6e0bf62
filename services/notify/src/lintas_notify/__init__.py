"""Notify: SMS to workers, in their language, carrying nothing but a case reference."""
