"""The console's pages, one module per kind of person, and what they share (web.py)."""
