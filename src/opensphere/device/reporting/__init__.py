"""Failure reporting on the device: a persistent, bounded, aggregating event queue."""
