-- Every batch this confirmer has fetched, checked and replayed, in order (borsh `SignedBatch`).
-- `unverified` says why a batch is not hard-final although it replays (a deposit on a chain
-- with no verifier configured); NULL when nothing is left unchecked.
CREATE TABLE replayed_batches (
    number INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    body BLOB NOT NULL,
    locator TEXT NOT NULL,
    unverified TEXT
);

-- Every alarm, once per batch and kind, with its evidence file (JSON).
CREATE TABLE alarms (
    number INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    evidence TEXT NOT NULL,
    PRIMARY KEY (number, kind)
);
