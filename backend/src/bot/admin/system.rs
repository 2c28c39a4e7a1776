//! Admin commands about the system: `/admin`, `/status`, `/reconcile`, `/invite`.

use pvpn_common::{NodeName, RegionCode};
use serde_json::json;

use super::{AdminUnit, Call, Outcome, Refusal, UNITS};
use crate::admin_args::InviteDays;
use crate::service::{ReconcileTarget, ServiceError};

pub(super) const HELP: AdminUnit = AdminUnit {
    name: "admin",
    usage: "/admin",
    takes_arguments: false,
    action: help,
};

fn help<'a>(call: &'a Call<'a>, _args: &'a [String]) -> Outcome<'a> {
    Box::pin(async move { Ok(call.t.admin_usage(&usages())) })
}

/// Every usage line but `/admin`'s own.
fn usages() -> Vec<&'static str> {
    UNITS
        .iter()
        .filter(|u| u.name != HELP.name)
        .map(|u| u.usage)
        .collect()
}

pub(super) const STATUS: AdminUnit = AdminUnit {
    name: "status",
    usage: "/status",
    takes_arguments: false,
    action: status,
};

fn status<'a>(call: &'a Call<'a>, _args: &'a [String]) -> Outcome<'a> {
    Box::pin(async move {
        let status = call.service.system_status().await?;
        call.service
            .audit(&call.actor, "bot.status", None, json!({}))
            .await?;
        Ok(call.t.status_report(&status))
    })
}

pub(super) const RECONCILE: AdminUnit = AdminUnit {
    name: "reconcile",
    usage: "/reconcile <region|node>",
    takes_arguments: true,
    action: reconcile,
};

/// Region codes and node names share one syntax: a region is tried first, then a node.
fn reconcile<'a>(call: &'a Call<'a>, args: &'a [String]) -> Outcome<'a> {
    Box::pin(async move {
        let region: RegionCode = super::one(&RECONCILE, args)?;
        let node: NodeName = super::one(&RECONCILE, args)?;
        let service = call.service;
        let region_target = ReconcileTarget::Region(region.clone());
        let (target, id) = match service.request_reconcile(&call.actor, &region_target).await {
            Ok(id) => (format!("region {region}"), id),
            Err(ServiceError::RegionNotFound) => {
                let node_target = ReconcileTarget::Node(node.clone());
                match service.request_reconcile(&call.actor, &node_target).await {
                    Ok(id) => (format!("node {node}"), id),
                    Err(ServiceError::NodeNotFound) => {
                        return Ok(call.t.no_reconcile_target(region.as_str()));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        Ok(call.t.reconcile_requested(&target, &id))
    })
}

pub(super) const INVITE: AdminUnit = AdminUnit {
    name: "invite",
    usage: "/invite [uses] [days]",
    takes_arguments: true,
    action: invite,
};

/// `[uses]` defaults to 1 (the service checks its range), `[days]` to never expiring.
fn invite<'a>(call: &'a Call<'a>, args: &'a [String]) -> Outcome<'a> {
    Box::pin(async move {
        let usage = || Refusal::Usage(INVITE.usage);
        let (uses, days) = match args {
            [] => (1, None),
            [uses] => (uses.parse().map_err(|_| usage())?, None),
            [uses, days] => (
                uses.parse().map_err(|_| usage())?,
                Some(days.parse::<InviteDays>().map_err(|_| usage())?),
            ),
            _ => return Err(usage()),
        };
        let valid_for = days.map(InviteDays::duration);
        let invite = call
            .service
            .create_invite(&call.actor, uses, valid_for)
            .await?;
        let link = format!("https://t.me/{}?start={}", call.me.username(), invite.code);
        Ok(call.t.invite_created(&invite, &link))
    })
}
