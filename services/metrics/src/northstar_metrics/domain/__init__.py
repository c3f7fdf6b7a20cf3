"""Pure metric definitions: no I/O."""
