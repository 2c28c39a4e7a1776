-- Feedback ingestion is idempotent and ordered per node: the stream entry id of the newest
-- entry stored, per node and kind. An entry at or below it was stored before (re-delivered, or
-- read by a second backend) or is older than one already stored (two consumers out of order),
-- and is dropped. Stream entry ids are `<ms>-<seq>` and only grow within a stream.
CREATE TABLE feedback_cursor (
    node        TEXT NOT NULL REFERENCES nodes (name) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('heartbeat', 'stats')),
    entry_ms    BIGINT NOT NULL CHECK (entry_ms >= 0),
    entry_seq   BIGINT NOT NULL CHECK (entry_seq >= 0),
    PRIMARY KEY (node, kind)
);
