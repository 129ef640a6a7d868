-- Where each chain watcher stands: the last block it scanned at depth, every deposit at or below
-- it credited in this ledger. A restarted coordinator resumes after it instead of rescanning the
-- chain from its configured start (issue 23: a restart's cost follows the state, not the
-- history), and checks the block is still canonical. `scope` names the chain and what is
-- watched ("ethereum:0x…vault"); `hash` is the block's hash as hex.
CREATE TABLE chain_scan_marks (
    scope TEXT PRIMARY KEY,
    number BIGINT NOT NULL,
    hash TEXT NOT NULL
);
