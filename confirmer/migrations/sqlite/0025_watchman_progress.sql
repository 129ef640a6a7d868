-- What a watchman keeps across restarts beside its replay (issue 23): how far its settlement
-- book has pruned, so a start reads the book from there and not from genesis, and the Ethereum
-- leaves the vault could not pay, each with its own proof (the pruned book no longer holds
-- their ranges). A confirmer that is no watchman leaves both empty.
CREATE TABLE watchman_horizons (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    eth_pruned_through INTEGER NOT NULL,
    btc_pruned_through INTEGER NOT NULL,
    settled_through INTEGER NOT NULL
);

CREATE TABLE watchman_stuck_leaves (
    batch INTEGER NOT NULL,
    leaf_index INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (batch, leaf_index)
);
