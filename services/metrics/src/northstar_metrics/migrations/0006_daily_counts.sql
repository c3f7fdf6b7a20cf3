-- Valid-status workflow runs per day (of the run's timestamp) and workflow: the
-- Workflows query and the workflow-runs / error-rate series read a range of days
-- here instead of every run event. '' stands for a run naming no workflow.
CREATE TABLE run_days (
    tenant text NOT NULL,
    day date NOT NULL,
    workflow_id text NOT NULL,
    successful bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day, workflow_id)
);

-- Events per name and day of their timestamp (the event-count series).
CREATE TABLE event_days (
    tenant text NOT NULL,
    event text NOT NULL,
    day date NOT NULL,
    n bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, event, day)
);

-- The same runs summed over the workflows (the workflow-runs and error-rate
-- series): one row per day, so a quarter is ~90 rows whatever the workflows.
CREATE TABLE run_day_totals (
    tenant text NOT NULL,
    day date NOT NULL,
    successful bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day)
);
