-- A node speaks plain WireGuard or AmneziaWG (issue 15). An AmneziaWG node has an obfuscation
-- profile (`pvpn_common::obfuscation::AwgProfile` as JSON: jc, jmin, jmax, s1..s4, h1..h4) that
-- its interface and every client config issued for it share; a WireGuard node has none. The
-- profile's own rules are checked by the backend where it is written and read.
ALTER TABLE nodes
    ADD COLUMN protocol TEXT NOT NULL DEFAULT 'wireguard'
        CHECK (protocol IN ('wireguard', 'amneziawg')),
    ADD COLUMN awg_profile JSONB
        CHECK (awg_profile IS NULL OR jsonb_typeof(awg_profile) = 'object'),
    ADD CONSTRAINT nodes_profile_matches_protocol
        CHECK ((protocol = 'amneziawg') = (awg_profile IS NOT NULL));
