"""Lintas console: the web workspace of caseworkers, lawyers and programme staff.

It keeps no case data: every case read and write goes through intake's and referral's
HTTP APIs with a short-lived token naming the signed-in person. Its own store holds only
people, sessions and settings.
"""
