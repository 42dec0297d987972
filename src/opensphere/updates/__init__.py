"""Compromise-resilient update metadata (TUF): the repository core and the device client.

`repository` builds and signs the metadata (pure: values, signers and `now` in, new state out);
`static` lays a state out as files for a static server or CDN; `client` wraps python-tuf's
ngclient for the device; `conformance_cli` exposes that client as tuf-conformance's client under
test. Nothing here imports `service` or `device`: both use us.
"""
