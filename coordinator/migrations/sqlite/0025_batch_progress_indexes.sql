-- What the sequencer and the publisher ask of the batches table at every seal, publish and
-- start, answered from indexes (issue 23: cost that follows the state, not the history).
-- A batch's body sits before `locator`, `first_seq` and `tx_count` in each row, so reading those
-- columns from the table makes SQLite walk the body's overflow pages: a scan over the table (the
-- transactions batched so far, the unpublished batches, the newest published one) read every
-- batch ever sealed, at every seal.

-- Sequence ranges, covering: the end of the batched transactions (the last entry), and the
-- batches holding given transactions, without touching a body.
CREATE INDEX batches_by_seq_range ON batches (first_seq, tx_count, number, locator);
DROP INDEX batches_by_first_seq;

-- The batches still to publish: few, whatever the history.
CREATE INDEX batches_unpublished ON batches (number) WHERE locator IS NULL;
