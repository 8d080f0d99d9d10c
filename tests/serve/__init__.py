"""Serving tests (a package, so their servers are torn down when the last one is done)."""
