"""The console's pure rules: people and roles, sessions, sign-in limits (no I/O)."""
