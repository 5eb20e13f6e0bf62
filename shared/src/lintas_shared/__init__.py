"""Contracts and conventions every Lintas service agrees on.

Nothing here knows about any one service: event envelopes and payloads, topic names,
settings, logging, and factories for the Kafka and MongoDB clients.
"""
