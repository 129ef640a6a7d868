-- Which acknowledged transactions touch which account (sender, receiver, depositor), for the
-- API's per-account history. The account is keyed by its address's first 8 bytes, for the same
-- reason as `txs.hash_key`; readers check the transaction itself.
CREATE TABLE account_txs (
    account_key INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (account_key, seq)
) WITHOUT ROWID;
