-- Messages the bot owes users outside a conversation (issue 15), kept until they are delivered so
-- a restart never repeats one and a crash never loses one.
--
-- blocked_device: a device that never completed a handshake hours after it was issued; the bot
--   suggests an obfuscated (AmneziaWG) region. At most one row per device, ever.
-- node_changed: `pvpnctl node notify-reissue <node>`: the node's configuration changed and the
--   user's devices on it need new configs. At most one pending row per user and node.
--
-- state: due (chosen, to send) → sent, or failed (Telegram refused it, or it kept failing), or
-- dropped (no longer true when its turn came: the device connected, was revoked, ...).
CREATE TABLE user_notices (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id),
    kind        TEXT NOT NULL CHECK (kind IN ('blocked_device', 'node_changed')),
    device_id   BIGINT REFERENCES devices (id),
    node        TEXT REFERENCES nodes (name) ON DELETE CASCADE,
    state       TEXT NOT NULL DEFAULT 'due' CHECK (state IN ('due', 'sent', 'failed', 'dropped')),
    -- Failed attempts to send so far (a network error, not a refusal).
    attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    done_at     TIMESTAMPTZ,
    CHECK ((kind = 'blocked_device') = (device_id IS NOT NULL)),
    CHECK ((kind = 'node_changed') = (node IS NOT NULL)),
    CHECK ((state = 'due') = (done_at IS NULL))
);
CREATE UNIQUE INDEX user_notices_once_per_device ON user_notices (device_id)
    WHERE kind = 'blocked_device';
CREATE UNIQUE INDEX user_notices_one_pending_per_node ON user_notices (user_id, node)
    WHERE kind = 'node_changed' AND state = 'due';
CREATE INDEX user_notices_due ON user_notices (id) WHERE state = 'due';
-- What the bot's nudge pass looks for every minute: active devices that never connected.
CREATE INDEX devices_never_connected ON devices ((coalesce(reissued_at, created_at)))
    WHERE status = 'active' AND last_handshake_at IS NULL;
