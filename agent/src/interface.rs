//! The node's interface beyond its peers: its protocol and, on AmneziaWG, its obfuscation
//! parameters, checked against the node's [`InterfaceSpec`] at every reconcile.
//!
//! PostgreSQL decides the profile and the relay publishes it next to the snapshot; the agent sets
//! it on the interface (the interface unit only creates the link with its key and port), so a
//! profile changed with `pvpnctl` reaches the node without an Ansible run, and a parameter
//! changed behind the agent's back is set back. A spec for a protocol the interface does not
//! speak (AmneziaWG wanted, plain WireGuard driven) is refused before anything is applied.

use pvpn_common::obfuscation::{InterfaceSpec, Protocol};

use crate::wireguard::{ObfuscationParams, WgError, WireGuard};

/// What [`converge`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceOutcome {
    /// The interface already matched the spec.
    Matches,
    /// The obfuscation parameters differed (`found`) and were set to the spec's.
    Corrected { found: ObfuscationParams },
}

/// Why the interface cannot be brought to the spec.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    #[error(
        "the node is published as {wanted} but the agent drives a {driven} interface \
         (PVPN_WG_BACKEND); nothing applied"
    )]
    WrongProtocol { wanted: Protocol, driven: Protocol },
    #[error(transparent)]
    WireGuard(#[from] WgError),
}

/// What the interface's obfuscation parameters must be under `spec`, or why the interface cannot
/// take it. Reads nothing: the check that comes before any change.
pub fn desired(
    wg: &dyn WireGuard,
    spec: &InterfaceSpec,
) -> Result<Option<ObfuscationParams>, InterfaceError> {
    if spec.protocol != wg.protocol() {
        return Err(InterfaceError::WrongProtocol {
            wanted: spec.protocol,
            driven: wg.protocol(),
        });
    }
    Ok(spec.amneziawg.as_ref().map(ObfuscationParams::from))
}

/// Compares the interface with `want` and sets every obfuscation parameter if any differs.
pub fn converge(
    wg: &dyn WireGuard,
    want: &ObfuscationParams,
) -> Result<InterfaceOutcome, InterfaceError> {
    match wg.read_obfuscation()? {
        Some(found) if found == *want => Ok(InterfaceOutcome::Matches),
        found => {
            wg.set_obfuscation(want)?;
            Ok(InterfaceOutcome::Corrected {
                found: found.unwrap_or_default(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wireguard::memory::MemoryWireGuard;
    use pvpn_common::obfuscation::AwgProfile;

    #[test]
    fn an_amneziawg_spec_is_refused_by_a_plain_wireguard_interface() {
        let wg = MemoryWireGuard::new();
        let spec = InterfaceSpec::amneziawg(AwgProfile::generate());
        assert!(matches!(
            desired(&wg, &spec),
            Err(InterfaceError::WrongProtocol {
                wanted: Protocol::AmneziaWg,
                driven: Protocol::WireGuard
            })
        ));
        assert_eq!(desired(&wg, &InterfaceSpec::wireguard()).unwrap(), None);
    }

    #[test]
    fn drifted_parameters_are_set_back_and_matching_ones_left_alone() {
        let wg = MemoryWireGuard::amneziawg();
        let profile = AwgProfile::generate();
        let want = desired(&wg, &InterfaceSpec::amneziawg(profile))
            .unwrap()
            .unwrap();
        let fresh = converge(&wg, &want).unwrap();
        assert_eq!(
            fresh,
            InterfaceOutcome::Corrected {
                found: ObfuscationParams::default()
            }
        );
        assert_eq!(converge(&wg, &want).unwrap(), InterfaceOutcome::Matches);
        let mut drifted = want.clone();
        drifted.jc += 1;
        wg.set_obfuscation(&drifted).unwrap();
        assert_eq!(
            converge(&wg, &want).unwrap(),
            InterfaceOutcome::Corrected { found: drifted }
        );
        assert_eq!(wg.read_obfuscation().unwrap(), Some(want.clone()));

        // A special junk packet set, or one cleared, behind the agent's back is a drift too.
        let mut junk_set = want.clone();
        junk_set.i[1] = "<r 9>".into();
        wg.set_obfuscation(&junk_set).unwrap();
        assert_eq!(
            converge(&wg, &want).unwrap(),
            InterfaceOutcome::Corrected { found: junk_set }
        );
        let mut with_i1 = AwgProfile::generate();
        with_i1.i1 = Some("<b 0x01><t>".parse().unwrap());
        let want = ObfuscationParams::from(&with_i1);
        converge(&wg, &want).unwrap();
        let mut cleared = want.clone();
        cleared.i[0] = String::new();
        wg.set_obfuscation(&cleared).unwrap();
        assert_eq!(
            converge(&wg, &want).unwrap(),
            InterfaceOutcome::Corrected { found: cleared }
        );
        assert_eq!(wg.read_obfuscation().unwrap(), Some(want));
    }
}
