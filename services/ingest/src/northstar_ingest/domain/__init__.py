"""The ingest service's pure rules: no I/O, no clock but the one passed in."""
