-- PVPN's source of truth: who may use the service, where, and with which keys.
--
-- Constraints guard the invariants (unique keys, unique addresses per node, valid names and
-- states); application code relies on them instead of re-checking under races.

CREATE TABLE users (
    id                  BIGSERIAL PRIMARY KEY,
    telegram_id         BIGINT NOT NULL UNIQUE,
    username            TEXT CHECK (username IS NULL OR length(username) BETWEEN 1 AND 64),
    language            TEXT NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'ru')),
    status              TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'banned')),
    device_limit        INTEGER NOT NULL DEFAULT 3 CHECK (device_limit BETWEEN 0 AND 100),
    -- NULL: access never expires.
    access_expires_at   TIMESTAMPTZ,
    -- Set when the expiry scheduler revoked access and the user still has to be told.
    expiry_notice_due   BOOLEAN NOT NULL DEFAULT false,
    invite_code         TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX users_username ON users (lower(username));

CREATE TABLE regions (
    code            TEXT PRIMARY KEY CHECK (code ~ '^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$'),
    display_name    TEXT NOT NULL CHECK (length(display_name) BETWEEN 1 AND 64),
    -- active: takes new devices; draining: keeps existing ones, takes none; disabled: hidden.
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draining', 'disabled')),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE nodes (
    name                TEXT PRIMARY KEY CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$'),
    region              TEXT NOT NULL REFERENCES regions (code),
    endpoint            TEXT NOT NULL CHECK (length(endpoint) BETWEEN 3 AND 260),
    public_key          TEXT NOT NULL UNIQUE CHECK (length(public_key) = 44),
    listen_port         INTEGER NOT NULL CHECK (listen_port BETWEEN 1 AND 65535),
    subnet              CIDR NOT NULL CHECK (family(subnet) = 4 AND masklen(subnet) BETWEEN 16 AND 30),
    dns                 INET[] NOT NULL DEFAULT '{}',
    capacity            INTEGER NOT NULL CHECK (capacity > 0),
    status              TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    -- Desired-state revision: +1 for every peer change written to the outbox.
    revision            BIGINT NOT NULL DEFAULT 0 CHECK (revision >= 0),
    -- Highest revision the relay has published to Redis.
    published_revision  BIGINT NOT NULL DEFAULT 0 CHECK (published_revision >= 0),
    -- What the node's agent last reported.
    applied_revision    BIGINT NOT NULL DEFAULT 0 CHECK (applied_revision >= 0),
    last_heartbeat_at   TIMESTAMPTZ,
    agent_version       TEXT,
    peer_count          INTEGER,
    last_reconcile      JSONB,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (published_revision <= revision)
);
CREATE INDEX nodes_region ON nodes (region);

CREATE TABLE devices (
    id                  BIGSERIAL PRIMARY KEY,
    user_id             BIGINT NOT NULL REFERENCES users (id),
    node                TEXT NOT NULL REFERENCES nodes (name),
    name                TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 32),
    -- Re-issuing replaces the key in place; a key is never reused by any device, ever.
    public_key          TEXT NOT NULL UNIQUE CHECK (length(public_key) = 44),
    preshared_key       TEXT CHECK (preshared_key IS NULL OR length(preshared_key) = 44),
    address             INET NOT NULL CHECK (family(address) = 4 AND masklen(address) = 32),
    status              TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    revoke_reason       TEXT CHECK (revoke_reason IN ('user', 'admin', 'banned', 'expired', 'node_disabled')),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    reissued_at         TIMESTAMPTZ,
    revoked_at          TIMESTAMPTZ,
    -- Usage reported by the node: cumulative totals, and the last raw counters they were built from.
    last_handshake_at   TIMESTAMPTZ,
    rx_bytes            BIGINT NOT NULL DEFAULT 0 CHECK (rx_bytes >= 0),
    tx_bytes            BIGINT NOT NULL DEFAULT 0 CHECK (tx_bytes >= 0),
    rx_counter          BIGINT NOT NULL DEFAULT 0 CHECK (rx_counter >= 0),
    tx_counter          BIGINT NOT NULL DEFAULT 0 CHECK (tx_counter >= 0),
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL)),
    CHECK ((status = 'revoked') = (revoke_reason IS NOT NULL))
);
-- Two live devices never share an address on a node; a revoked device's address is free again.
CREATE UNIQUE INDEX devices_live_address ON devices (node, address) WHERE status = 'active';
CREATE INDEX devices_user ON devices (user_id) WHERE status = 'active';

CREATE TABLE invites (
    -- Telegram deep-link start parameters allow [A-Za-z0-9_-], at most 64 characters.
    code            TEXT PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9_-]{8,64}$'),
    created_by      TEXT NOT NULL,
    max_uses        INTEGER NOT NULL DEFAULT 1 CHECK (max_uses > 0),
    uses            INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= max_uses),
    expires_at      TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Changes of desired state waiting to be published to Redis, written in the same transaction as
-- the change itself. The relay publishes them in id order and sets published_at.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    region          TEXT NOT NULL REFERENCES regions (code),
    -- NULL for control events addressed to a whole region.
    node            TEXT REFERENCES nodes (name),
    -- The node revision this change produces; NULL for control events.
    revision        BIGINT CHECK (revision IS NULL OR revision > 0),
    kind            TEXT NOT NULL CHECK (kind IN ('peer_upsert', 'peer_remove', 'reconcile')),
    -- The pvpn_common::wire::StreamEvent, as JSON.
    payload         JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at    TIMESTAMPTZ,
    UNIQUE (node, revision),
    CHECK ((kind = 'reconcile') = (revision IS NULL)),
    CHECK (kind = 'reconcile' OR node IS NOT NULL)
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Who: 'telegram:<id>', 'cli:<unix user>', 'system:<task>'.
    actor       TEXT NOT NULL CHECK (length(actor) BETWEEN 1 AND 128),
    action      TEXT NOT NULL CHECK (length(action) BETWEEN 1 AND 64),
    target      TEXT,
    details     JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
