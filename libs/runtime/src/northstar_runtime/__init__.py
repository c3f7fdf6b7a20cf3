"""The shared runtime of every Northstar service (DESIGN.md rule 6)."""
