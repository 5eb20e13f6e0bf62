"""How the outside world reaches notify: Kafka subscribers (and, later, SMS callbacks)."""
