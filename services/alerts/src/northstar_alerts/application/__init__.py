"""Use cases of the alerts service: evaluating rules, acknowledging alerts, delivering
notifications."""
