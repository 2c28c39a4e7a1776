-- A node's protocol parameters change as a desired-state change of their own (issue 15): an
-- `interface_set` outbox row carries a StreamEvent::InterfaceSet on the node's next revision.
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('peer_upsert', 'peer_remove', 'reconcile', 'interface_set'));
