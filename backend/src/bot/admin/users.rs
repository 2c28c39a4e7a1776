//! Admin commands about one user: `/user`, `/ban`, `/unban`, `/limit`, `/expire`.

use serde_json::json;

use super::{AdminUnit, Call, Outcome, one, two};
use crate::admin_args::Expiry;
use crate::service::UserRef;

pub(super) const USER: AdminUnit = AdminUnit {
    name: "user",
    usage: "/user <id|@name>",
    takes_arguments: true,
    action: user,
};

fn user<'a>(call: &'a Call<'a>, args: &'a [String]) -> Outcome<'a> {
    Box::pin(async move {
        let user: UserRef = one(&USER, args)?;
        let found = call.service.find_user(&user).await?;
        let target = found.telegram_id.to_string();
        call.service
            .audit(&call.actor, "bot.user_lookup", Some(&target), json!({}))
            .await?;
        Ok(call.t.user_card(&found))
    })
}

pub(super) const BAN: AdminUnit = AdminUnit {
    name: "ban",
    usage: "/ban <id|@name>",
    takes_arguments: true,
    action: ban,
};

fn ban<'a>(call: &'a Call<'a>, args: &'a [String]) -> Outcome<'a> {
    Box::pin(async move {
        let user: UserRef = one(&BAN, args)?;
        Ok(call
            .t
            .user_banned(&call.service.ban_user(&call.actor, &user).await?))
    })
}

pub(super) const UNBAN: AdminUnit = AdminUnit {
    name: "unban",
    usage: "/unban <id|@name>",
    takes_arguments: true,
    action: unban,
};

fn unban<'a>(call: &'a Call<'a>, args: &'a [String]) -> Outcome<'a> {
    Box::pin(async move {
        let user: UserRef = one(&UNBAN, args)?;
        Ok(call
            .t
            .user_updated(&call.service.unban_user(&call.actor, &user).await?))
    })
}

pub(super) const LIMIT: AdminUnit = AdminUnit {
    name: "limit",
    usage: "/limit <id|@name> <0-100>",
    takes_arguments: true,
    action: limit,
};

/// The range is the service's to check (`MAX_DEVICE_LIMIT`), as for `pvpnctl user set-limit`.
fn limit<'a>(call: &'a Call<'a>, args: &'a [String]) -> Outcome<'a> {
    Box::pin(async move {
        let (user, limit): (UserRef, u32) = two(&LIMIT, args)?;
        let updated = call
            .service
            .set_device_limit(&call.actor, &user, limit)
            .await?;
        Ok(call.t.user_updated(&updated))
    })
}

pub(super) const EXPIRE: AdminUnit = AdminUnit {
    name: "expire",
    usage: "/expire <id|@name> <YYYY-MM-DD|RFC 3339|never>",
    takes_arguments: true,
    action: expire,
};

fn expire<'a>(call: &'a Call<'a>, args: &'a [String]) -> Outcome<'a> {
    Box::pin(async move {
        let (user, Expiry(at)): (UserRef, Expiry) = two(&EXPIRE, args)?;
        let updated = call
            .service
            .set_access_expiry(&call.actor, &user, at)
            .await?;
        Ok(call.t.user_updated(&updated))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_args::EXPIRY_FORMS;

    #[test]
    fn the_expire_usage_lists_the_shared_forms() {
        assert!(EXPIRE.usage.contains(EXPIRY_FORMS));
    }
}
