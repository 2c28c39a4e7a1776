//! Texts of the admin commands (`/status`, `/user`, `/ban`, ...).

use pvpn_common::wire::ReconcileReport;

use super::{Texts, date};
use crate::service::{BanOutcome, Invite, Language, NodeStatus, SystemStatus, User, UserStatus};

impl Texts {
    /// The list of admin commands, one usage line each (the lines are the commands' own).
    pub fn admin_usage(&self, usages: &[&str]) -> String {
        let commands = usages.join("\n");
        match self.lang {
            Language::En => format!("Admin commands:\n{commands}"),
            Language::Ru => format!("Команды администратора:\n{commands}"),
        }
    }

    pub fn admin_bad_arguments(&self, usage: &str) -> String {
        match self.lang {
            Language::En => format!("Usage: {usage}"),
            Language::Ru => format!("Использование: {usage}"),
        }
    }

    pub fn status_report(&self, status: &SystemStatus) -> String {
        let mut out = match self.lang {
            Language::En => format!(
                "Users: {}, active devices: {}, outbox backlog: {}",
                status.users, status.active_devices, status.outbox_backlog
            ),
            Language::Ru => format!(
                "Пользователей: {}, активных устройств: {}, очередь outbox: {}",
                status.users, status.active_devices, status.outbox_backlog
            ),
        };
        if status.nodes.is_empty() {
            out.push('\n');
            out.push_str(&self.pick("No nodes.", "Узлов нет."));
        }
        for node in &status.nodes {
            out.push_str("\n\n");
            out.push_str(&self.node_line(node));
        }
        out
    }

    fn node_line(&self, n: &NodeStatus) -> String {
        let health = match (n.up, self.lang) {
            (true, Language::En) => "🟢 up",
            (true, Language::Ru) => "🟢 работает",
            (false, Language::En) => "🔴 down",
            (false, Language::Ru) => "🔴 не отвечает",
        };
        let peers = n
            .peer_count
            .map_or_else(|| "?".to_string(), |p| p.to_string());
        let drift = n
            .last_reconcile
            .clone()
            .and_then(|v| serde_json::from_value::<ReconcileReport>(v).ok())
            .map(|r| format!("+{} −{} ~{}", r.added, r.removed, r.updated));
        let drift = drift.unwrap_or_else(|| self.pick("no reconcile yet", "сверок ещё не было"));
        match self.lang {
            Language::En => format!(
                "{} ({}, {}) {health}\n  peers {peers}, devices {}/{}\n  revision: applied {} / published {} / desired {}\n  last reconcile drift: {drift}",
                n.name,
                n.region,
                n.status,
                n.devices,
                n.capacity,
                n.applied_revision,
                n.published_revision,
                n.revision
            ),
            Language::Ru => format!(
                "{} ({}, {}) {health}\n  пиров {peers}, устройств {}/{}\n  ревизия: применена {} / опубликована {} / желаемая {}\n  расхождение при последней сверке: {drift}",
                n.name,
                n.region,
                n.status,
                n.devices,
                n.capacity,
                n.applied_revision,
                n.published_revision,
                n.revision
            ),
        }
    }

    pub fn reconcile_requested(&self, target: &str, request_id: &str) -> String {
        match self.lang {
            Language::En => format!("Reconcile requested for {target} (request {request_id})."),
            Language::Ru => format!("Сверка запрошена для {target} (запрос {request_id})."),
        }
    }

    pub fn no_reconcile_target(&self, name: &str) -> String {
        match self.lang {
            Language::En => format!("No region or node is called {name}."),
            Language::Ru => format!("Нет ни региона, ни узла с именем {name}."),
        }
    }

    pub fn user_card(&self, u: &User) -> String {
        let name = u
            .username
            .as_deref()
            .map_or_else(String::new, |n| format!(" @{n}"));
        let status = match (u.status, self.lang) {
            (UserStatus::Active, Language::En) => "active",
            (UserStatus::Active, Language::Ru) => "активен",
            (UserStatus::Banned, Language::En) => "banned",
            (UserStatus::Banned, Language::Ru) => "заблокирован",
        };
        let expires = u
            .access_expires_at
            .map_or_else(|| self.pick("never", "никогда"), date);
        match self.lang {
            Language::En => format!(
                "User {}{name}: {status}\ndevices {}/{}, access expires: {expires}\nlanguage {}, registered {}",
                u.telegram_id,
                u.active_devices,
                u.device_limit,
                u.language.code(),
                date(u.created_at)
            ),
            Language::Ru => format!(
                "Пользователь {}{name}: {status}\nустройств {}/{}, доступ до: {expires}\nязык {}, зарегистрирован {}",
                u.telegram_id,
                u.active_devices,
                u.device_limit,
                u.language.code(),
                date(u.created_at)
            ),
        }
    }

    pub fn user_banned(&self, outcome: &BanOutcome) -> String {
        match self.lang {
            Language::En => format!(
                "Banned. Revoked devices: {}.\n{}",
                outcome.revoked_devices,
                self.user_card(&outcome.user)
            ),
            Language::Ru => format!(
                "Заблокирован. Отозвано устройств: {}.\n{}",
                outcome.revoked_devices,
                self.user_card(&outcome.user)
            ),
        }
    }

    pub fn user_updated(&self, user: &User) -> String {
        match self.lang {
            Language::En => format!("Done.\n{}", self.user_card(user)),
            Language::Ru => format!("Готово.\n{}", self.user_card(user)),
        }
    }

    pub fn invite_created(&self, invite: &Invite, link: &str) -> String {
        let expires = invite
            .expires_at
            .map_or_else(|| self.pick("never", "никогда"), date);
        match self.lang {
            Language::En => format!(
                "Invite link ({} uses, expires: {expires}):\n{link}",
                invite.max_uses
            ),
            Language::Ru => format!(
                "Ссылка-приглашение (использований: {}, истекает: {expires}):\n{link}",
                invite.max_uses
            ),
        }
    }
}
