"""Fault injection for the whole Lintas pipeline (`make faults`).

A fresh Kafka and FerretDB on ports of their own, two instances of each service, a
driver submitting cases as an NGO client would, and a seeded chaos schedule (SIGKILLs,
broker and store restarts, a consumer-group rewind, poison records). At the end the
stores and topics are read directly and a table says what was acknowledged, stored,
routed, sent, duplicated, lost and dead-lettered.
"""
