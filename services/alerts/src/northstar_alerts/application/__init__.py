"""Use cases of the alerts service: the notification dispatcher."""
