-- Forced transactions a sealed batch recorded with a transaction (issue 21: applied, refused
-- or a duplicate; a malformed entry has none): which batch and record index, looked up by the
-- transaction's signing hash, so GET /tx/{hash} answers for a forced transaction with its
-- outcome and refusal code. The record itself stays in the batch's body.
CREATE TABLE forced_txs (
    number BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    hash_key BIGINT NOT NULL,
    PRIMARY KEY (number, idx)
);
CREATE INDEX forced_txs_by_hash ON forced_txs (hash_key);

-- A batch of forced transactions only holds no API transaction (tx_count = 0), so it shares
-- its first_seq with the next batch: first_seq cannot be unique (a unique index stopped the
-- sequencer at the batch after any forced-only batch).
DROP INDEX batches_by_first_seq;
CREATE INDEX batches_by_first_seq ON batches (first_seq);
