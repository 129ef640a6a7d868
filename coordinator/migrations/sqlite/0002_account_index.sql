-- Which acknowledged transactions touch which account (sender, receiver, depositor), for the
-- API's per-account history; newest first by `seq`.
CREATE TABLE account_txs (
    account BLOB NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (account, seq)
) WITHOUT ROWID;
