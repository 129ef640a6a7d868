-- Accounts that asked for their Bitcoin deposit address: the deposit watcher watches their
-- addresses, and a restarted coordinator watches them again. The account as 0x-hex text.
CREATE TABLE btc_deposit_accounts (
    account TEXT PRIMARY KEY
);
