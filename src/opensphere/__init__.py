"""OpenSphere: root of trust, secured device OS and security service."""
