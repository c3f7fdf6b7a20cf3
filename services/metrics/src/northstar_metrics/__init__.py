"""The metrics service: the log projected into read models, and the numbers of spec/metrics.md."""
