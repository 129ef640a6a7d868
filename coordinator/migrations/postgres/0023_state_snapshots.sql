-- Snapshots of the state at sealed batches (issue 23): a snapshot is the encoded
-- `bridge::Snapshot` split into chunks; the row in `state_snapshots` is written last, in the
-- same transaction, so a snapshot is there whole or not at all. Checked against the signed
-- header of batch `number` before use; pruned to the newest few (chains::snapshots).
CREATE TABLE state_snapshots (
    number BIGINT PRIMARY KEY,
    header_hash BYTEA NOT NULL,
    state_root BYTEA NOT NULL,
    byte_len BIGINT NOT NULL,
    chunk_count BIGINT NOT NULL,
    checksum BYTEA NOT NULL
);

CREATE TABLE state_snapshot_chunks (
    number BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    bytes BYTEA NOT NULL,
    PRIMARY KEY (number, idx)
);
