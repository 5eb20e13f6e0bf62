"""How the outside world reaches intake: HTTP routes and Kafka subscribers."""
