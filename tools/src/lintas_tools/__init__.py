"""The `lintas` operator command.

An operator tool, not a service: it may use every service's adapters.
"""
