"""Pure domain of alerts: rules, conditions, alert state, silences."""
