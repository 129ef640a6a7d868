-- Snapshots of the state at sealed batches (issue 23): a snapshot is the encoded
-- `bridge::Snapshot` split into chunks; the row in `state_snapshots` is written last, in the
-- same transaction, so a snapshot is there whole or not at all. Checked against the signed
-- header of batch `number` before use; pruned to the newest few (chains::snapshots).
CREATE TABLE state_snapshots (
    number INTEGER PRIMARY KEY,
    header_hash BLOB NOT NULL,
    state_root BLOB NOT NULL,
    byte_len INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL,
    checksum BLOB NOT NULL
);

CREATE TABLE state_snapshot_chunks (
    number INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (number, idx)
);
