"""How the outside world reaches referral: Kafka subscribers (and, later, the partner API)."""
