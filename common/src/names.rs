//! Validated region codes and node names.
//!
//! Both end up inside Redis key names, consumer group names, file names and Telegram callback
//! payloads, so they are restricted to lowercase ASCII letters, digits and inner hyphens.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted region code or node name.
pub const MAX_NAME_LEN: usize = 32;

/// Why a string is not a valid region code or node name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} {value:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong { kind: &'static str, value: String },
    #[error("{kind} {value:?} may only contain lowercase letters a-z, digits and '-'")]
    InvalidChar { kind: &'static str, value: String },
    #[error("{kind} {value:?} must not start or end with '-'")]
    EdgeHyphen { kind: &'static str, value: String },
}

fn validate(kind: &'static str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty { kind });
    }
    // Keep the error message bounded even for huge inputs.
    let shown = || value.chars().take(MAX_NAME_LEN + 8).collect::<String>();
    if value.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            kind,
            value: shown(),
        });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(NameError::InvalidChar {
            kind,
            value: shown(),
        });
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err(NameError::EdgeHyphen {
            kind,
            value: shown(),
        });
    }
    Ok(())
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
                let value = value.into();
                validate($kind, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

validated_name!(
    /// A region users pick, such as `nl` or `us-east`.
    RegionCode,
    "region code"
);
validated_name!(
    /// One VPN server inside a region, such as `nl-1`.
    NodeName,
    "node name"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for ok in ["nl", "us-east", "a", "node-01", &"x".repeat(MAX_NAME_LEN)] {
            assert_eq!(RegionCode::new(ok).unwrap().as_str(), ok);
            assert_eq!(NodeName::new(ok).unwrap().to_string(), ok);
        }
    }

    #[test]
    fn rejects_invalid_names_with_typed_errors() {
        assert!(matches!(RegionCode::new(""), Err(NameError::Empty { .. })));
        assert!(matches!(
            RegionCode::new("x".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong { .. })
        ));
        for bad in ["NL", "n l", "nl:1", "nl{x}", "ü", "a_b", "a/b", "a*"] {
            assert!(
                matches!(NodeName::new(bad), Err(NameError::InvalidChar { .. })),
                "{bad:?}"
            );
        }
        for bad in ["-a", "a-", "-"] {
            assert!(matches!(
                NodeName::new(bad),
                Err(NameError::EdgeHyphen { .. })
            ));
        }
    }

    #[test]
    fn serde_validates() {
        let ok: RegionCode = serde_json::from_str("\"de\"").unwrap();
        assert_eq!(ok.as_str(), "de");
        assert!(serde_json::from_str::<RegionCode>("\"DE\"").is_err());
    }
}
