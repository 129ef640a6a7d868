-- Which replayed batch holds each transaction (docs/PROTOCOL.md "Transaction ids"): the index
-- behind GET /tx/{id}, on disk so that memory does not grow with the history (issue 23).
CREATE TABLE replayed_txs (
    hash BYTEA PRIMARY KEY,
    number BIGINT NOT NULL
);

-- What each replayed batch owes on L1 (JSON: Ethereum withdrawals, Bitcoin payouts, payout
-- plans), for batches that owe anything: a restart from a snapshot does not replay the batches
-- before it, and the watchman still needs what they owe.
CREATE TABLE settlements (
    number BIGINT PRIMARY KEY,
    body TEXT NOT NULL
);
