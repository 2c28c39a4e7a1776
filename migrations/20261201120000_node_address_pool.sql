-- A node's live-device count and its free addresses, kept next to the node so that placing a
-- grant and allocating its address never scan the node's devices (issue #13).
--
-- Every statement that makes a device live or not live maintains them in the same transaction,
-- under the node's row lock (`backend::db::devices::insert` / `revoke`, `backend::db::addresses`).
-- The unique index devices_live_address stays the backstop.

-- How many devices of the node are active: count(*) over devices, kept up to date.
ALTER TABLE nodes ADD COLUMN live_devices INTEGER NOT NULL DEFAULT 0 CHECK (live_devices >= 0);

-- The lowest client address never handed out; NULL: none yet (the client range's first is next).
-- Every client address below it is either held by a live device or in free_addresses.
ALTER TABLE nodes ADD COLUMN next_address INET
    CHECK (next_address IS NULL OR (family(next_address) = 4 AND masklen(next_address) = 32));

-- Addresses below the node's next_address that no live device holds: a revoked device's address,
-- reused lowest first.
CREATE TABLE free_addresses (
    node        TEXT NOT NULL REFERENCES nodes (name),
    address     INET NOT NULL CHECK (family(address) = 4 AND masklen(address) = 32),
    PRIMARY KEY (node, address)
);

-- Backfill from the devices that exist. A node's client range starts at network + 2 (the node
-- itself is network + 1; `pvpn_common::addressing::ClientSubnet::client_range`).
UPDATE nodes n
SET live_devices = live.count, next_address = live.top + 1
FROM (SELECT node, count(*) AS count, max(address) AS top
      FROM devices WHERE status = 'active' GROUP BY node) AS live
WHERE live.node = n.name;

INSERT INTO free_addresses (node, address)
SELECT n.name, set_masklen(network(n.subnet)::inet + 2 + g, 32)
FROM nodes n
CROSS JOIN LATERAL generate_series(0, (n.next_address - (network(n.subnet)::inet + 2)) - 1) AS g
WHERE n.next_address IS NOT NULL
EXCEPT
SELECT node, address FROM devices WHERE status = 'active';
