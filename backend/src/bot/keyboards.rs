//! The inline keyboards the bot shows. Every button's payload is a [`CallbackAction`].

use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

use super::callback::CallbackAction;
use super::texts::Texts;
use crate::service::{DeviceView, Language, RegionView};

fn button(label: String, action: CallbackAction) -> InlineKeyboardButton {
    InlineKeyboardButton::callback(label, action.encode())
}

pub fn main_menu(t: Texts) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([
        vec![button(t.button_new_device(), CallbackAction::NewDevice)],
        vec![button(t.button_devices(), CallbackAction::Devices)],
        vec![
            button(t.button_language(), CallbackAction::LanguageMenu),
            button(t.button_help(), CallbackAction::Help),
        ],
    ])
}

pub fn back_to_menu(t: Texts) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[button(t.button_menu(), CallbackAction::Menu)]])
}

pub fn languages() -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[
        button("English".into(), CallbackAction::SetLanguage(Language::En)),
        button("Русский".into(), CallbackAction::SetLanguage(Language::Ru)),
    ]])
}

/// One button per region that takes new devices. Regions that are full are listed (so the user
/// knows they exist) but lead to the "region full" answer.
pub fn regions(t: Texts, regions: &[RegionView]) -> InlineKeyboardMarkup {
    let mut rows: Vec<Vec<InlineKeyboardButton>> = regions
        .iter()
        .map(|r| {
            vec![button(
                t.region_button(r),
                CallbackAction::PickRegion(r.code.clone()),
            )]
        })
        .collect();
    rows.push(vec![button(t.button_menu(), CallbackAction::Menu)]);
    InlineKeyboardMarkup::new(rows)
}

pub fn skip_name(t: Texts, region: &RegionView) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([
        vec![button(
            t.button_skip_name(),
            CallbackAction::SkipName(region.code.clone()),
        )],
        vec![button(t.button_cancel(), CallbackAction::Menu)],
    ])
}

pub fn devices(t: Texts, devices: &[DeviceView]) -> InlineKeyboardMarkup {
    let mut rows: Vec<Vec<InlineKeyboardButton>> = devices
        .iter()
        .map(|d| {
            vec![
                button(t.button_reissue(&d.name), CallbackAction::AskReissue(d.id)),
                button(t.button_revoke(&d.name), CallbackAction::AskRevoke(d.id)),
            ]
        })
        .collect();
    rows.push(vec![
        button(t.button_new_device(), CallbackAction::NewDevice),
        button(t.button_menu(), CallbackAction::Menu),
    ]);
    InlineKeyboardMarkup::new(rows)
}

pub fn confirm_revoke(t: Texts, device_id: i64) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[
        button(
            t.button_yes_revoke(),
            CallbackAction::ConfirmRevoke(device_id),
        ),
        button(t.button_cancel(), CallbackAction::Devices),
    ]])
}

pub fn confirm_reissue(t: Texts, device_id: i64) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[
        button(
            t.button_yes_reissue(),
            CallbackAction::ConfirmReissue(device_id),
        ),
        button(t.button_cancel(), CallbackAction::Devices),
    ]])
}

/// Under the nudge for a device that never connected: a new device in each obfuscated region
/// (the grant path with the default name), and revoking the device that does not work.
pub fn blocked_device(
    t: Texts,
    device: &DeviceView,
    obfuscated: &[RegionView],
) -> InlineKeyboardMarkup {
    let mut rows: Vec<Vec<InlineKeyboardButton>> = obfuscated
        .iter()
        .map(|r| {
            vec![button(
                t.button_new_device_in(r),
                CallbackAction::SkipName(r.code.clone()),
            )]
        })
        .collect();
    rows.push(vec![button(
        t.button_revoke(&device.name),
        CallbackAction::AskRevoke(device.id),
    )]);
    InlineKeyboardMarkup::new(rows)
}

/// Under the notice that a node's configuration changed: re-issue each device (no confirmation
/// step: its old config no longer works).
pub fn reissue_changed(t: Texts, devices: &[DeviceView]) -> InlineKeyboardMarkup {
    let mut rows: Vec<Vec<InlineKeyboardButton>> = devices
        .iter()
        .map(|d| {
            vec![button(
                t.button_reissue(&d.name),
                CallbackAction::ConfirmReissue(d.id),
            )]
        })
        .collect();
    rows.push(vec![button(t.button_menu(), CallbackAction::Menu)]);
    InlineKeyboardMarkup::new(rows)
}
