//! `pvpnctl user ...`

use clap::Subcommand;
use serde_json::json;

use super::{actor, output};
use crate::admin_args::Expiry;
use crate::service::{Service, User, UserRef};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List every user.
    List,
    /// Show one user and their active devices.
    Show {
        /// Telegram user id or @username.
        user: UserRef,
    },
    /// Ban a user and revoke all of their devices.
    Ban { user: UserRef },
    /// Lift a ban (revoked devices stay revoked).
    Unban { user: UserRef },
    /// Set how many active devices the user may have (0-100).
    SetLimit { user: UserRef, limit: u32 },
    /// Set when the user's access ends: an RFC 3339 time (2026-12-31T23:59:59Z), a date
    /// (2026-12-31, midnight UTC), or `never`.
    SetExpiry { user: UserRef, expires: Expiry },
}

fn row(u: &User) -> Vec<String> {
    vec![
        u.telegram_id.to_string(),
        output::opt(u.username.as_ref().map(|n| format!("@{n}"))),
        format!("{:?}", u.status).to_lowercase(),
        format!("{}/{}", u.active_devices, u.device_limit),
        output::opt(u.access_expires_at.map(|t| t.to_rfc3339())),
        u.language.code().into(),
    ]
}

const HEADERS: [&str; 6] = [
    "TELEGRAM ID",
    "USERNAME",
    "STATUS",
    "DEVICES",
    "EXPIRES",
    "LANG",
];

fn print_user(user: &User, json: bool) -> anyhow::Result<()> {
    if json {
        output::json(user)
    } else {
        output::table(&HEADERS, &[row(user)]);
        Ok(())
    }
}

pub async fn run(service: &Service, cmd: UserCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        UserCommand::List => {
            let users = service.list_users().await?;
            if json {
                return output::json(&users);
            }
            output::table(&HEADERS, &users.iter().map(row).collect::<Vec<_>>());
            Ok(())
        }
        UserCommand::Show { user } => {
            let user = service.find_user(&user).await?;
            let devices = service.list_devices(user.telegram_id).await?;
            if json {
                return output::json(&json!({ "user": user, "devices": devices }));
            }
            output::table(&HEADERS, &[row(&user)]);
            println!();
            let rows: Vec<Vec<String>> = devices
                .iter()
                .map(|d| {
                    vec![
                        d.id.to_string(),
                        d.name.clone(),
                        d.region.to_string(),
                        d.node.to_string(),
                        d.address.to_string(),
                        output::opt(d.last_handshake_at.map(|t| t.to_rfc3339())),
                        format!("{}/{}", d.rx_bytes, d.tx_bytes),
                    ]
                })
                .collect();
            output::table(
                &[
                    "DEVICE",
                    "NAME",
                    "REGION",
                    "NODE",
                    "ADDRESS",
                    "HANDSHAKE",
                    "RX/TX",
                ],
                &rows,
            );
            Ok(())
        }
        UserCommand::Ban { user } => {
            let outcome = service.ban_user(&actor(), &user).await?;
            if json {
                return output::json(&outcome);
            }
            println!(
                "banned {}; revoked {} device(s)",
                outcome.user.telegram_id, outcome.revoked_devices
            );
            Ok(())
        }
        UserCommand::Unban { user } => {
            print_user(&service.unban_user(&actor(), &user).await?, json)
        }
        UserCommand::SetLimit { user, limit } => print_user(
            &service.set_device_limit(&actor(), &user, limit).await?,
            json,
        ),
        UserCommand::SetExpiry { user, expires } => print_user(
            &service
                .set_access_expiry(&actor(), &user, expires.0)
                .await?,
            json,
        ),
    }
}
