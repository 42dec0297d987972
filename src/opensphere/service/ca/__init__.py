"""Certificates: the service root CA, per-tenant CAs with rotation, and device certificates.

`core` is pure (keys, records and `now` in; certificates and plans out); `authority`
loads and saves through the database and the key store; `routes` is the HTTP API.
"""
