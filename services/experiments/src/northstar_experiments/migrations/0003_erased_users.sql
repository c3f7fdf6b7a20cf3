-- Users erased (EraseUser), by a digest of (tenant, user_id) rather than the id itself, so
-- that no table keeps the erased identifier: later events of that user_id timestamped at
-- or before the erasure are dropped (erased history retried); later ones are a new history.
CREATE TABLE erased_users (
    tenant text NOT NULL,
    user_digest bytea NOT NULL,
    erased_at_us bigint NOT NULL,
    PRIMARY KEY (tenant, user_digest)
);
