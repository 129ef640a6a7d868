-- Where the solvency watch's scan of the Ethereum vault's Withdrawn logs stands (issue 23), so a
-- restart reads only the blocks since instead of every block since the vault's deployment:
-- the first block not read, the batch the kept payouts start after, and those payouts (JSON:
-- [batch, asset, amount as a decimal string] rows). One row per vault (scope "ethereum:0x…").
CREATE TABLE vault_payout_scans (
    scope TEXT PRIMARY KEY,
    next_block INTEGER NOT NULL,
    pruned_through INTEGER NOT NULL,
    paid TEXT NOT NULL
);
