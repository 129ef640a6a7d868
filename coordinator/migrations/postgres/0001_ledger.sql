-- Every acknowledged transaction, in the order the sequencer applied it; `batch` is set when the
-- batch holding it is sealed. Bodies are borsh `BatchTx`.
CREATE TABLE txs (
    seq BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL UNIQUE,
    body BYTEA NOT NULL,
    batch BIGINT
);
CREATE INDEX txs_unbatched ON txs (batch, seq);

-- Every sealed batch (borsh `SignedBatch`), and where it was published once it is.
CREATE TABLE batches (
    number BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL,
    body BYTEA NOT NULL,
    locator TEXT
);
