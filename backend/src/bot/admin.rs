//! Admin commands. The handler tree sends only admins here. Each argument is validated into a
//! typed value before the service is called; every action lands in the audit log (the service's
//! changing calls audit themselves, the read-only ones are audited here).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use pvpn_common::{NodeName, RegionCode};
use serde_json::json;
use teloxide::prelude::*;
use teloxide::types::Me;

use super::commands::AdminCommand;
use super::texts::Texts;
use super::user::{language_of, telegram_id};
use super::{BotContext, HandlerResult, TgBot};
use crate::service::{Actor, ReconcileTarget, ServiceError, UserRef};

/// Longest validity of an invite, in days.
const MAX_INVITE_DAYS: i64 = 3650;

pub(super) async fn handle(
    bot: TgBot,
    msg: Message,
    me: Me,
    ctx: Arc<BotContext>,
    command: AdminCommand,
) -> HandlerResult {
    let Some(from) = msg.from.as_ref() else {
        return Ok(());
    };
    let t = Texts::new(language_of(&ctx, Some(from)).await);
    let actor = Actor::Telegram(telegram_id(from));
    let reply = match run(&ctx, &me, &actor, t, command).await {
        Ok(text) => text,
        Err(Refusal::Usage(usage)) => t.admin_bad_arguments(usage),
        Err(Refusal::Service(e)) => t.service_error(&e),
    };
    bot.send_message(msg.chat.id, reply).await?;
    Ok(())
}

enum Refusal {
    /// The arguments do not parse: show this usage line.
    Usage(&'static str),
    Service(ServiceError),
}

impl From<ServiceError> for Refusal {
    fn from(e: ServiceError) -> Self {
        Refusal::Service(e)
    }
}

fn user_ref(arg: Option<&String>, usage: &'static str) -> Result<UserRef, Refusal> {
    arg.and_then(|a| a.parse().ok())
        .ok_or(Refusal::Usage(usage))
}

/// `never`, a date (`2027-01-31`, midnight UTC) or an RFC 3339 moment.
fn expiry(arg: &str) -> Option<Option<DateTime<Utc>>> {
    if arg.eq_ignore_ascii_case("never") {
        return Some(None);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(arg) {
        return Some(Some(at.with_timezone(&Utc)));
    }
    let day = NaiveDate::parse_from_str(arg, "%Y-%m-%d").ok()?;
    Some(Some(day.and_hms_opt(0, 0, 0)?.and_utc()))
}

async fn run(
    ctx: &BotContext,
    me: &Me,
    actor: &Actor,
    t: Texts,
    command: AdminCommand,
) -> Result<String, Refusal> {
    let service = &ctx.service;
    match command {
        AdminCommand::Help => Ok(t.admin_usage()),
        AdminCommand::Status => {
            let status = service.system_status().await?;
            service.audit(actor, "bot.status", None, json!({})).await?;
            Ok(t.status_report(&status))
        }
        AdminCommand::Reconcile(arg) => {
            const USAGE: &str = "/reconcile <region|node>";
            let arg = arg.ok_or(Refusal::Usage(USAGE))?;
            // Region codes and node names share one syntax: a region is tried first.
            let region: RegionCode = arg.parse().map_err(|_| Refusal::Usage(USAGE))?;
            let node: NodeName = arg.parse().map_err(|_| Refusal::Usage(USAGE))?;
            let (target, id) = match service
                .request_reconcile(actor, &ReconcileTarget::Region(region.clone()))
                .await
            {
                Ok(id) => (format!("region {region}"), id),
                Err(ServiceError::RegionNotFound) => {
                    match service
                        .request_reconcile(actor, &ReconcileTarget::Node(node.clone()))
                        .await
                    {
                        Ok(id) => (format!("node {node}"), id),
                        Err(ServiceError::NodeNotFound) => {
                            return Ok(t.no_reconcile_target(&arg));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            };
            Ok(t.reconcile_requested(&target, &id))
        }
        AdminCommand::User(arg) => {
            let user = user_ref(arg.as_ref(), "/user <id|@name>")?;
            let found = service.find_user(&user).await?;
            let target = found.telegram_id.to_string();
            service
                .audit(actor, "bot.user_lookup", Some(&target), json!({}))
                .await?;
            Ok(t.user_card(&found))
        }
        AdminCommand::Ban(arg) => {
            let user = user_ref(arg.as_ref(), "/ban <id|@name>")?;
            Ok(t.user_banned(&service.ban_user(actor, &user).await?))
        }
        AdminCommand::Unban(arg) => {
            let user = user_ref(arg.as_ref(), "/unban <id|@name>")?;
            Ok(t.user_updated(&service.unban_user(actor, &user).await?))
        }
        AdminCommand::Limit(args) => {
            const USAGE: &str = "/limit <id|@name> <0-100>";
            let [who, n] = args.as_slice() else {
                return Err(Refusal::Usage(USAGE));
            };
            let user = user_ref(Some(who), USAGE)?;
            let limit: u32 = n.parse().map_err(|_| Refusal::Usage(USAGE))?;
            Ok(t.user_updated(&service.set_device_limit(actor, &user, limit).await?))
        }
        AdminCommand::Expire(args) => {
            const USAGE: &str = "/expire <id|@name> <YYYY-MM-DD|RFC 3339|never>";
            let [who, when] = args.as_slice() else {
                return Err(Refusal::Usage(USAGE));
            };
            let user = user_ref(Some(who), USAGE)?;
            let at = expiry(when).ok_or(Refusal::Usage(USAGE))?;
            Ok(t.user_updated(&service.set_access_expiry(actor, &user, at).await?))
        }
        AdminCommand::Invite(args) => {
            const USAGE: &str = "/invite [uses] [days]";
            let number = |i: usize| -> Result<Option<i64>, Refusal> {
                args.get(i)
                    .map(|a| a.parse::<i64>().map_err(|_| Refusal::Usage(USAGE)))
                    .transpose()
            };
            if args.len() > 2 {
                return Err(Refusal::Usage(USAGE));
            }
            let uses = u32::try_from(number(0)?.unwrap_or(1)).map_err(|_| Refusal::Usage(USAGE))?;
            let valid_for = match number(1)? {
                Some(days) if (1..=MAX_INVITE_DAYS).contains(&days) => {
                    Some(chrono::Duration::days(days))
                }
                Some(_) => return Err(Refusal::Usage(USAGE)),
                None => None,
            };
            let invite = service.create_invite(actor, uses, valid_for).await?;
            let link = format!("https://t.me/{}?start={}", me.username(), invite.code);
            Ok(t.invite_created(&invite, &link))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_arguments() {
        assert_eq!(expiry("never"), Some(None));
        assert_eq!(
            expiry("2027-01-31"),
            Some(Some("2027-01-31T00:00:00Z".parse().unwrap()))
        );
        assert_eq!(
            expiry("2027-01-31T12:00:00+03:00"),
            Some(Some("2027-01-31T09:00:00Z".parse().unwrap()))
        );
        for bad in ["", "tomorrow", "2027-02-30", "31.01.2027"] {
            assert_eq!(expiry(bad), None, "{bad}");
        }
    }
}
