-- The replayed batches that are not hard-final though they replay (`unverified` set): few,
-- whatever the history. A start asks for the first of them up to its restored batch; without
-- this index that was a scan over every batch ever replayed, and since each row holds the
-- batch's body before `unverified`, SQLite walked every body's overflow pages to read it: a
-- start from a snapshot read the whole record (issue 23: a start follows the state, not the
-- history).
CREATE INDEX replayed_batches_unverified ON replayed_batches (number) WHERE unverified IS NOT NULL;
