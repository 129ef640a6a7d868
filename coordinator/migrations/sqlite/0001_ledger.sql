-- Every acknowledged transaction, in the order the sequencer applied it; `batch` is set when the
-- batch holding it is sealed. Bodies are borsh `BatchTx`.
CREATE TABLE txs (
    seq INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    body BLOB NOT NULL,
    batch INTEGER
);
CREATE INDEX txs_unbatched ON txs (batch, seq);

-- Every sealed batch (borsh `SignedBatch`), and where it was published once it is.
CREATE TABLE batches (
    number INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    body BLOB NOT NULL,
    locator TEXT
);
