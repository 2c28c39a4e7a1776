//! Admin commands, one [`AdminUnit`] each: name, usage line, whether it takes arguments, and the
//! action that parses them into typed values, calls the service and words the answer. The
//! handler tree sends only admins here. Every action lands in the audit log (the service's
//! changing calls audit themselves, the read-only ones are audited by their units).

mod system;
mod users;

use std::sync::Arc;

use futures::future::BoxFuture;
use teloxide::prelude::*;
use teloxide::types::Me;

use super::texts::Texts;
use super::user::{language_of, telegram_id};
use super::{BotContext, HandlerResult, TgBot};
use crate::service::{Actor, Service, ServiceError};

/// One admin command.
pub struct AdminUnit {
    /// `/name`, lowercase.
    pub name: &'static str,
    /// The usage line shown in `/admin` and on bad arguments.
    pub usage: &'static str,
    /// `false`: words after the command make it an unknown command, like `/help me`.
    pub takes_arguments: bool,
    action: Action,
}

type Action = for<'a> fn(&'a Call<'a>, &'a [String]) -> Outcome<'a>;

/// What an action answers, or why it refused.
type Outcome<'a> = BoxFuture<'a, Result<String, Refusal>>;

impl std::fmt::Debug for AdminUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Every admin command, in the order `/admin` lists them.
const UNITS: [&AdminUnit; 9] = [
    &system::HELP,
    &system::STATUS,
    &system::RECONCILE,
    &users::USER,
    &users::BAN,
    &users::UNBAN,
    &users::LIMIT,
    &users::EXPIRE,
    &system::INVITE,
];

/// The admin command called `name` (lowercase), if there is one.
pub fn unit(name: &str) -> Option<&'static AdminUnit> {
    UNITS.into_iter().find(|u| u.name == name)
}

/// An admin command as typed: which one, and its words.
#[derive(Debug, Clone)]
pub struct AdminRequest {
    pub unit: &'static AdminUnit,
    pub args: Vec<String>,
}

impl PartialEq for AdminRequest {
    fn eq(&self, other: &Self) -> bool {
        self.unit.name == other.unit.name && self.args == other.args
    }
}

impl Eq for AdminRequest {}

/// What an action has to work with.
struct Call<'a> {
    service: &'a Service,
    me: &'a Me,
    actor: Actor,
    t: Texts,
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

pub(super) async fn handle(
    bot: TgBot,
    msg: Message,
    me: Me,
    ctx: Arc<BotContext>,
    request: AdminRequest,
) -> HandlerResult {
    let Some(from) = msg.from.as_ref() else {
        return Ok(());
    };
    let t = Texts::new(language_of(&ctx, Some(from)).await);
    let call = Call {
        service: &ctx.service,
        me: &me,
        actor: Actor::Telegram(telegram_id(from)),
        t,
    };
    let reply = match (request.unit.action)(&call, &request.args).await {
        Ok(text) => text,
        Err(Refusal::Usage(usage)) => t.admin_bad_arguments(usage),
        Err(Refusal::Service(e)) => t.service_error(&e),
    };
    bot.send_message(msg.chat.id, reply).await?;
    Ok(())
}

/// The one argument of a unit that takes exactly one, parsed; anything else is its usage.
fn one<T: std::str::FromStr>(unit: &AdminUnit, args: &[String]) -> Result<T, Refusal> {
    match args {
        [arg] => arg.parse().map_err(|_| Refusal::Usage(unit.usage)),
        _ => Err(Refusal::Usage(unit.usage)),
    }
}

/// The two arguments of a unit that takes exactly two, parsed.
fn two<A: std::str::FromStr, B: std::str::FromStr>(
    unit: &AdminUnit,
    args: &[String],
) -> Result<(A, B), Refusal> {
    let usage = || Refusal::Usage(unit.usage);
    let [a, b] = args else {
        return Err(usage());
    };
    Ok((
        a.parse().map_err(|_| usage())?,
        b.parse().map_err(|_| usage())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_usages_start_with_them() {
        for (i, u) in UNITS.iter().enumerate() {
            assert!(u.usage.starts_with(&format!("/{}", u.name)), "{u:?}");
            assert!(UNITS[..i].iter().all(|v| v.name != u.name), "{u:?}");
            assert_eq!(unit(u.name).map(|v| v.name), Some(u.name));
        }
        assert!(unit("start").is_none());
    }
}
