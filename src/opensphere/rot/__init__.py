"""rot package."""
