-- Devices brought over from an existing WireGuard server by `pvpnctl import`: their keys were
-- made elsewhere, so PVPN has no config to show for them until they are re-issued.
ALTER TABLE devices ADD COLUMN imported_at TIMESTAMPTZ;
