-- Per tenant, summed over its workflows (runs naming a workflow, valid status), what
-- answers "active workflows in [s, e]" for any range without reading each workflow's
-- days (domain/spans.py `span_rows`, `active_in`). `kind`:
--   0  first run days (x = y = the day): workflows whose first run day is x;
--   1  last run days (x = y = the day);
--   2  gaps between consecutive run days with at least one day inside (x < y - 1);
--   3  run days (x = y = the day): workflows with a run on that day.
-- Active in [s, e] = (kind 0 with y <= e) - (kind 1 with y < s) - (kind 2 with
-- x < s and y > e); a day's active workflows are its kind 3 row. Rows back at zero
-- are removed, so that the table equals a rebuild's.
CREATE TABLE workflow_spans (
    tenant text NOT NULL,
    kind smallint NOT NULL,
    y date NOT NULL,
    x date NOT NULL,
    workflows bigint NOT NULL,
    PRIMARY KEY (tenant, kind, y, x)
);

-- One workflow's run days in order, for the projection to re-derive its rows.
CREATE INDEX run_days_by_workflow ON run_days (tenant, workflow_id, day);
