-- Which acknowledged transactions touch which account (sender, receiver, depositor), for the
-- API's per-account history; newest first by `seq`.
CREATE TABLE account_txs (
    account BYTEA NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (account, seq)
);
