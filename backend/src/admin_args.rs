//! Arguments that the bot's admin commands and `pvpnctl` both take, parsed and checked the same
//! way: an access expiry and an invite's validity in days. (User references are
//! [`crate::service::UserRef`], device limits are checked by the service.)

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};

/// When a user's access ends: `never`, a date (`2027-01-31`, midnight UTC) or an RFC 3339 moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry(pub Option<DateTime<Utc>>);

/// What the expiry forms are, for usage lines.
pub const EXPIRY_FORMS: &str = "YYYY-MM-DD|RFC 3339|never";

impl FromStr for Expiry {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("never") {
            return Ok(Expiry(None));
        }
        if let Ok(at) = DateTime::parse_from_rfc3339(s) {
            return Ok(Expiry(Some(at.with_timezone(&Utc))));
        }
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| Expiry(Some(t.and_utc())))
            .ok_or_else(|| format!("{s:?} is not an RFC 3339 time, a YYYY-MM-DD date, or `never`"))
    }
}

/// For how many days an invite is valid: 1 to [`InviteDays::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InviteDays(u32);

impl InviteDays {
    /// Ten years.
    pub const MAX: u32 = 3650;

    pub fn duration(self) -> chrono::Duration {
        chrono::Duration::days(i64::from(self.0))
    }
}

impl FromStr for InviteDays {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<u32>()
            .ok()
            .filter(|d| (1..=Self::MAX).contains(d))
            .map(InviteDays)
            .ok_or_else(|| format!("{s:?} is not a number of days from 1 to {}", Self::MAX))
    }
}

impl fmt::Display for InviteDays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_forms() {
        assert_eq!("never".parse(), Ok(Expiry(None)));
        assert_eq!("NEVER".parse(), Ok(Expiry(None)));
        assert_eq!(
            "2027-01-31".parse(),
            Ok(Expiry(Some("2027-01-31T00:00:00Z".parse().unwrap())))
        );
        assert_eq!(
            "2027-01-31T12:00:00+03:00".parse(),
            Ok(Expiry(Some("2027-01-31T09:00:00Z".parse().unwrap())))
        );
        for bad in ["", "tomorrow", "2027-02-30", "31.01.2027"] {
            assert!(bad.parse::<Expiry>().is_err(), "{bad}");
        }
    }

    #[test]
    fn invite_days() {
        assert_eq!(
            "7".parse::<InviteDays>().map(|d| d.duration().num_days()),
            Ok(7)
        );
        assert!("3650".parse::<InviteDays>().is_ok());
        for bad in ["0", "3651", "-1", "x", ""] {
            assert!(bad.parse::<InviteDays>().is_err(), "{bad}");
        }
    }
}
