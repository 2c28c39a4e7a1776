//! Inline-button payloads: what each button asks for, encoded into Telegram's 64-byte
//! `callback_data` and parsed back strictly.
//!
//! Anyone can send any `callback_data` (a modified client, an old message), so parsing accepts
//! exactly what [`CallbackAction::encode`] produces and nothing else; the service layer still
//! checks that a device id belongs to the presser.

use std::fmt;
use std::str::FromStr;

use pvpn_common::RegionCode;

use crate::service::Language;

/// Telegram's limit on `callback_data`, in bytes.
pub const MAX_CALLBACK_DATA: usize = 64;

/// What a button asks the bot to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackAction {
    /// Show the main menu.
    Menu,
    /// Start adding a device: show the region picker.
    NewDevice,
    /// A region was picked: ask for a device name.
    PickRegion(RegionCode),
    /// Grant a device in the region with the default name.
    SkipName(RegionCode),
    /// List the user's devices.
    Devices,
    /// Ask to confirm revoking a device.
    AskRevoke(i64),
    ConfirmRevoke(i64),
    /// Ask to confirm re-issuing a device's key.
    AskReissue(i64),
    ConfirmReissue(i64),
    /// Show the language picker.
    LanguageMenu,
    SetLanguage(Language),
    Help,
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("callback data is longer than {MAX_CALLBACK_DATA} bytes")]
    TooLong,
    #[error("unknown button {0:?}")]
    UnknownTag(String),
    #[error("button {0:?} needs an argument")]
    MissingArgument(&'static str),
    #[error("button {0:?} takes no argument")]
    UnexpectedArgument(&'static str),
    #[error("invalid argument for button {0:?}")]
    BadArgument(&'static str),
}

impl CallbackAction {
    /// The `callback_data` string for this action.
    pub fn encode(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for CallbackAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallbackAction::Menu => f.write_str("menu"),
            CallbackAction::NewDevice => f.write_str("new"),
            CallbackAction::PickRegion(r) => write!(f, "region:{r}"),
            CallbackAction::SkipName(r) => write!(f, "noname:{r}"),
            CallbackAction::Devices => f.write_str("devices"),
            CallbackAction::AskRevoke(id) => write!(f, "revoke:{id}"),
            CallbackAction::ConfirmRevoke(id) => write!(f, "revoke-yes:{id}"),
            CallbackAction::AskReissue(id) => write!(f, "reissue:{id}"),
            CallbackAction::ConfirmReissue(id) => write!(f, "reissue-yes:{id}"),
            CallbackAction::LanguageMenu => f.write_str("lang"),
            CallbackAction::SetLanguage(l) => write!(f, "lang:{}", l.code()),
            CallbackAction::Help => f.write_str("help"),
        }
    }
}

/// A device id as the bot prints it: a positive decimal with no sign, no leading zero.
fn parse_id(tag: &'static str, s: &str) -> Result<i64, CallbackError> {
    let canonical = !s.is_empty()
        && s.len() <= 19
        && s.bytes().all(|b| b.is_ascii_digit())
        && !s.starts_with('0');
    if !canonical {
        return Err(CallbackError::BadArgument(tag));
    }
    s.parse().map_err(|_| CallbackError::BadArgument(tag))
}

fn parse_region(tag: &'static str, s: &str) -> Result<RegionCode, CallbackError> {
    s.parse().map_err(|_| CallbackError::BadArgument(tag))
}

impl FromStr for CallbackAction {
    type Err = CallbackError;

    fn from_str(data: &str) -> Result<Self, Self::Err> {
        if data.len() > MAX_CALLBACK_DATA {
            return Err(CallbackError::TooLong);
        }
        let (tag, arg) = match data.split_once(':') {
            Some((tag, arg)) => (tag, Some(arg)),
            None => (data, None),
        };
        // Tags without an argument.
        let plain = |action: CallbackAction, name: &'static str| match arg {
            None => Ok(action),
            Some(_) => Err(CallbackError::UnexpectedArgument(name)),
        };
        match tag {
            "menu" => plain(CallbackAction::Menu, "menu"),
            "new" => plain(CallbackAction::NewDevice, "new"),
            "devices" => plain(CallbackAction::Devices, "devices"),
            "help" => plain(CallbackAction::Help, "help"),
            "lang" => match arg {
                None => Ok(CallbackAction::LanguageMenu),
                Some("en") => Ok(CallbackAction::SetLanguage(Language::En)),
                Some("ru") => Ok(CallbackAction::SetLanguage(Language::Ru)),
                Some(_) => Err(CallbackError::BadArgument("lang")),
            },
            "region" => {
                let arg = arg.ok_or(CallbackError::MissingArgument("region"))?;
                Ok(CallbackAction::PickRegion(parse_region("region", arg)?))
            }
            "noname" => {
                let arg = arg.ok_or(CallbackError::MissingArgument("noname"))?;
                Ok(CallbackAction::SkipName(parse_region("noname", arg)?))
            }
            "revoke" | "revoke-yes" | "reissue" | "reissue-yes" => {
                let name: &'static str = match tag {
                    "revoke" => "revoke",
                    "revoke-yes" => "revoke-yes",
                    "reissue" => "reissue",
                    _ => "reissue-yes",
                };
                let id = parse_id(name, arg.ok_or(CallbackError::MissingArgument(name))?)?;
                Ok(match name {
                    "revoke" => CallbackAction::AskRevoke(id),
                    "revoke-yes" => CallbackAction::ConfirmRevoke(id),
                    "reissue" => CallbackAction::AskReissue(id),
                    _ => CallbackAction::ConfirmReissue(id),
                })
            }
            other => Err(CallbackError::UnknownTag(other.chars().take(16).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_actions() -> Vec<CallbackAction> {
        let region: RegionCode = "nl-ams-2".parse().unwrap();
        vec![
            CallbackAction::Menu,
            CallbackAction::NewDevice,
            CallbackAction::PickRegion(region.clone()),
            CallbackAction::SkipName(region),
            CallbackAction::Devices,
            CallbackAction::AskRevoke(1),
            CallbackAction::ConfirmRevoke(i64::MAX),
            CallbackAction::AskReissue(42),
            CallbackAction::ConfirmReissue(7),
            CallbackAction::LanguageMenu,
            CallbackAction::SetLanguage(Language::En),
            CallbackAction::SetLanguage(Language::Ru),
            CallbackAction::Help,
        ]
    }

    #[test]
    fn every_action_round_trips_within_telegram_limit() {
        for action in all_actions() {
            let data = action.encode();
            assert!(data.len() <= MAX_CALLBACK_DATA, "{data}");
            assert_eq!(data.parse::<CallbackAction>(), Ok(action));
        }
        let longest: RegionCode = "a"
            .repeat(pvpn_common::names::MAX_NAME_LEN)
            .parse()
            .unwrap();
        assert!(CallbackAction::SkipName(longest).encode().len() <= MAX_CALLBACK_DATA);
    }

    #[test]
    fn garbled_and_forged_payloads_are_refused() {
        for bad in [
            "",
            "menu:",
            "menu:1",
            "revoke",
            "revoke:",
            "revoke:abc",
            "revoke:-1",
            "revoke:+1",
            "revoke:0",
            "revoke:01",
            "revoke:1 ",
            "revoke:99999999999999999999",
            "revoke-yes:1:2",
            "region:NL",
            "region:nl;drop",
            "region:",
            "lang:de",
            "REVOKE:1",
            "unknown",
            &"x".repeat(65),
        ] {
            assert!(bad.parse::<CallbackAction>().is_err(), "{bad:?} accepted");
        }
    }
}
