"""Failure reporting in the service: ingest, problems, reports, crash dumps, retention."""
