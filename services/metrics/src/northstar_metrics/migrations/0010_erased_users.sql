-- Users erased (EraseUser), by a digest of (tenant, user_id) rather than the id itself, so
-- that no table keeps the erased identifier: what the projection needs is only to know,
-- for a later event of the same user_id, whether its timestamp is at or before the
-- erasure (dropped: erased history retried) or after it (a new history).
CREATE TABLE erased_users (
    tenant text NOT NULL,
    user_digest bytea NOT NULL,
    erased_at_us bigint NOT NULL,
    PRIMARY KEY (tenant, user_digest)
);
