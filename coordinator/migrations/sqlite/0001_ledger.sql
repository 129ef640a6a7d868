-- Every acknowledged transaction, in the order the sequencer applied it; bodies are borsh
-- `BatchTx`. Rows are written once and never updated: which batch holds a transaction follows
-- from the batches' sequence ranges.
CREATE TABLE txs (
    seq INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    -- The hash's first 8 bytes (big-endian, signed): lookups by hash go through it. Every group
    -- commit inserts keys all over this index, so a small key (a third of a 32-byte one) means
    -- fewer pages written per commit.
    hash_key INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX txs_by_hash ON txs (hash_key);

-- Every sealed batch (borsh `SignedBatch`), the transactions it holds (`first_seq` and the
-- `tx_count` after it), and where it was published once it is.
CREATE TABLE batches (
    number INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    body BLOB NOT NULL,
    locator TEXT,
    first_seq INTEGER NOT NULL,
    tx_count INTEGER NOT NULL
);
CREATE UNIQUE INDEX batches_by_first_seq ON batches (first_seq);
