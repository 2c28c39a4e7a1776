//! The values the database stores as checked text (statuses, reasons, languages) as Rust types,
//! and the one way a row's text column becomes a typed value. A value the schema should have
//! prevented becomes a decode error naming the column, here at the edge, not a string the
//! service layer compares.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgRow, PgTypeInfo, PgValueRef, Postgres};
use sqlx::{Decode, Encode, Row, Type};

/// A text the database holds that is none of a column's known values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

fn unknown(what: &'static str, value: &str) -> UnknownValue {
    UnknownValue {
        what,
        value: value.chars().take(32).collect(),
    }
}

/// A column that does not hold what its type says: the error sqlx reports for it.
pub(crate) fn bad_column(column: &str, message: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: message.into(),
    }
}

/// Reads text column `column` and parses it into `T`, naming the column and value on failure.
pub(crate) fn parsed<T>(row: &PgRow, column: &str) -> sqlx::Result<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    let text: String = row.try_get(column)?;
    text.parse()
        .map_err(|e| bad_column(column, format!("invalid value {text:?}: {e}")))
}

/// Like [`parsed`] for a nullable secret (a preshared key): the error does not repeat the value.
pub(crate) fn parsed_secret_opt<T: FromStr>(row: &PgRow, column: &str) -> sqlx::Result<Option<T>> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| {
        t.parse()
            .map_err(|_| bad_column(column, "invalid value (secret, not shown)".into()))
    })
    .transpose()
}

/// Declares a text-valued enum: its spellings, `as_str`, `FromStr`, `Display`, and sqlx
/// encoding/decoding as PostgreSQL `TEXT`.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The spelling stored in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(unknown($what, other)),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Type<Postgres> for $name {
            fn type_info() -> PgTypeInfo {
                <String as Type<Postgres>>::type_info()
            }
            fn compatible(ty: &PgTypeInfo) -> bool {
                <String as Type<Postgres>>::compatible(ty)
            }
        }

        impl<'r> Decode<'r, Postgres> for $name {
            fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as Decode<Postgres>>::decode(value)?;
                Ok(text.parse()?)
            }
        }

        impl Encode<'_, Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as Encode<Postgres>>::encode(self.as_str(), buf)
            }
        }
    };
}

text_enum! {
    /// The languages the bot speaks.
    #[derive(Default)]
    Language, "language" { #[default] En => "en", Ru => "ru" }
}

impl Language {
    /// The stored code, `en` / `ru`.
    pub fn code(self) -> &'static str {
        self.as_str()
    }

    /// Maps a Telegram `language_code` ("ru", "ru-RU", "en-GB", ...) to a supported language.
    pub fn from_telegram(code: Option<&str>) -> Self {
        match code {
            Some(c) if c.to_ascii_lowercase().starts_with("ru") => Language::Ru,
            _ => Language::En,
        }
    }
}

text_enum! {
    /// Whether a user may use the service.
    UserStatus, "user status" { Active => "active", Banned => "banned" }
}

text_enum! {
    /// Whether a region takes devices.
    RegionStatus, "region status" {
        /// Takes new devices.
        Active => "active",
        /// Keeps its devices, takes no new ones.
        Draining => "draining",
        /// Hidden from users; its devices keep working until revoked.
        Disabled => "disabled",
    }
}

text_enum! {
    /// Whether a node takes new devices (a disabled node keeps its peers).
    NodeState, "node status" { Active => "active", Disabled => "disabled" }
}

text_enum! {
    /// Whether a device's peer is wanted on its node.
    DeviceStatus, "device status" { Active => "active", Revoked => "revoked" }
}

text_enum! {
    /// Why a device was revoked.
    RevokeReason, "revoke reason" {
        /// Its user revoked it.
        User => "user",
        Admin => "admin",
        /// Its user was banned.
        Banned => "banned",
        /// Its user's access expired.
        Expired => "expired",
        NodeDisabled => "node_disabled",
    }
}

text_enum! {
    /// What a message the bot owes a user outside a conversation is about (`user_notices`).
    NoticeKind, "notice kind" {
        /// A device never connected: suggest an obfuscated region.
        BlockedDevice => "blocked_device",
        /// A node's configuration changed: its devices need new configs.
        NodeChanged => "node_changed",
    }
}

text_enum! {
    /// Where such a message is: to send, or done one way or another.
    NoticeState, "notice state" {
        Due => "due",
        Sent => "sent",
        /// Telegram refused it, or sending kept failing.
        Failed => "failed",
        /// No longer true when its turn came; never sent.
        Dropped => "dropped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_and_unknown_ones_are_refused() {
        for reason in [
            RevokeReason::User,
            RevokeReason::Admin,
            RevokeReason::Banned,
            RevokeReason::Expired,
            RevokeReason::NodeDisabled,
        ] {
            assert_eq!(reason.as_str().parse::<RevokeReason>(), Ok(reason));
        }
        assert_eq!(
            serde_json::to_string(&RevokeReason::NodeDisabled).unwrap(),
            "\"node_disabled\""
        );
        let err = "Banned".parse::<UserStatus>().unwrap_err();
        assert_eq!(err.to_string(), "unknown user status \"Banned\"");
    }
}
