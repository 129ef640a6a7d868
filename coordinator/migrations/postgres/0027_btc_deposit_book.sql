-- The Bitcoin deposit book on disk: which output scripts are whose deposit address, under which
-- group key. Anyone may ask for any account's deposit address, so the watcher's book lives here
-- instead of in the coordinator's memory (it used to load every account that ever asked at start
-- and keep each one's addresses in a map). An account row says through which key generation it
-- is indexed; a key added later (a rotation) is indexed for every account before the watcher
-- reads another block, so no deposit to the new key's address is read unindexed.
ALTER TABLE btc_deposit_accounts ADD COLUMN indexed BIGINT NOT NULL DEFAULT 0;
-- (indexed, account): the watcher's page of accounts to index reads it in order, never sorts.
CREATE INDEX btc_deposit_accounts_by_indexed ON btc_deposit_accounts (indexed, account);

-- The group keys the book has held: `added` is the generation it was added at (1, 2, …: never
-- reused, so a dropped key's generation is never taken by a later one); a dropped key's grace is
-- over and its scripts are gone.
CREATE TABLE btc_deposit_keys (
    group_key BYTEA PRIMARY KEY,
    added BIGINT NOT NULL UNIQUE,
    dropped BIGINT NOT NULL DEFAULT 0
);

-- Each indexed account's deposit script under each watched key.
CREATE TABLE btc_deposit_scripts (
    script BYTEA PRIMARY KEY,
    account TEXT NOT NULL,
    group_key BYTEA NOT NULL
);
CREATE INDEX btc_deposit_scripts_by_key ON btc_deposit_scripts (group_key);
