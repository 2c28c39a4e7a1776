//! Every text the bot sends, in English and Russian, in one place. Handlers never spell a user-
//! visible string themselves: they call a method of [`Texts`] for the user's language.
//!
//! Texts are plain (no Telegram markup), so names users typed need no escaping.

use chrono::{DateTime, Utc};
use pvpn_common::DeviceNameError;

use crate::service::{DeviceView, Language, RegionView};

/// The texts in one language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Texts {
    pub lang: Language,
}

fn date(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Bytes as people read them: `0 B`, `12.3 KB`, `4.5 MB`, `1.2 GB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl Texts {
    pub fn new(lang: Language) -> Self {
        Self { lang }
    }

    fn pick(&self, en: &str, ru: &str) -> String {
        match self.lang {
            Language::En => en.to_string(),
            Language::Ru => ru.to_string(),
        }
    }

    // --- Menu and general -------------------------------------------------------------------

    pub fn welcome(&self, first_name: &str) -> String {
        match self.lang {
            Language::En => format!(
                "Hello, {first_name}! This is PVPN, your VPN.\nCreate a WireGuard config for each of your devices; you can manage them here any time."
            ),
            Language::Ru => format!(
                "Здравствуйте, {first_name}! Это PVPN, ваш VPN.\nСоздайте конфигурацию WireGuard для каждого своего устройства; управлять ими можно здесь в любой момент."
            ),
        }
    }

    pub fn menu(&self) -> String {
        self.pick("Main menu:", "Главное меню:")
    }

    pub fn unknown(&self) -> String {
        self.pick(
            "I did not understand that. Here is what I can do:",
            "Я не понял. Вот что я умею:",
        )
    }

    pub fn help(&self) -> String {
        self.pick(
            "PVPN gives you WireGuard configs.\n\n• New device: pick a region, name the device, and get a .conf file and a QR code.\n• My devices: see each device's status and traffic, re-issue its key or revoke it.\n\nCommands: /start — menu, /help — this help, /language — change language.",
            "PVPN выдаёт конфигурации WireGuard.\n\n• Новое устройство: выберите регион, назовите устройство и получите файл .conf и QR-код.\n• Мои устройства: статус и трафик каждого устройства, перевыпуск ключа или отзыв.\n\nКоманды: /start — меню, /help — эта справка, /language — сменить язык.",
        )
    }

    pub fn button_new_device(&self) -> String {
        self.pick("➕ New device", "➕ Новое устройство")
    }

    pub fn button_devices(&self) -> String {
        self.pick("📱 My devices", "📱 Мои устройства")
    }

    pub fn button_language(&self) -> String {
        self.pick("🌐 Language", "🌐 Язык")
    }

    pub fn button_help(&self) -> String {
        self.pick("❓ Help", "❓ Помощь")
    }

    pub fn button_menu(&self) -> String {
        self.pick("⬅️ Menu", "⬅️ Меню")
    }

    // --- Language ---------------------------------------------------------------------------

    pub fn choose_language(&self) -> String {
        self.pick("Choose a language:", "Выберите язык:")
    }

    pub fn language_set(&self) -> String {
        self.pick("Language: English.", "Язык: русский.")
    }

    // --- New device ------------------------------------------------------------------------

    pub fn choose_region(&self) -> String {
        self.pick(
            "Choose a region for the new device:",
            "Выберите регион для нового устройства:",
        )
    }

    pub fn no_regions(&self) -> String {
        self.pick(
            "No region takes new devices right now. Please try again later.",
            "Сейчас ни один регион не принимает новые устройства. Попробуйте позже.",
        )
    }

    /// A region on the picker: its name (🛡 when obfuscated) and its load.
    pub fn region_button(&self, region: &RegionView) -> String {
        let name = self.region_label(region);
        if region.accepts_new_devices() {
            let load = region.load_percent();
            match self.lang {
                Language::En => format!("{name} · load {load}%"),
                Language::Ru => format!("{name} · загрузка {load}%"),
            }
        } else {
            match self.lang {
                Language::En => format!("{name} · full"),
                Language::Ru => format!("{name} · нет мест"),
            }
        }
    }

    pub fn ask_device_name(&self, region_name: &str) -> String {
        match self.lang {
            Language::En => format!(
                "Region: {region_name}.\nSend a name for the device (for example: phone, laptop), or press “Skip”."
            ),
            Language::Ru => format!(
                "Регион: {region_name}.\nОтправьте название устройства (например: телефон, ноутбук) или нажмите «Пропустить»."
            ),
        }
    }

    pub fn button_skip_name(&self) -> String {
        self.pick("Skip", "Пропустить")
    }

    pub fn bad_device_name(&self, why: &DeviceNameError) -> String {
        let reason = match why {
            DeviceNameError::Length => self.pick(
                "A device name has 1 to 32 characters.",
                "Название устройства — от 1 до 32 символов.",
            ),
            DeviceNameError::Control(_) => self.pick(
                "A device name cannot contain line breaks or other control characters.",
                "Название устройства не может содержать переносы строк и другие управляющие символы.",
            ),
            DeviceNameError::Bidi(_) => self.pick(
                "A device name cannot contain characters that change the text direction.",
                "Название устройства не может содержать символы, меняющие направление текста.",
            ),
            DeviceNameError::Invisible(_) => self.pick(
                "A device name cannot contain invisible characters.",
                "Название устройства не может содержать невидимые символы.",
            ),
        };
        let next = self.pick(
            "Send another name, or press “Skip”.",
            "Отправьте другое название или нажмите «Пропустить».",
        );
        format!("{reason} {next}")
    }

    pub fn config_caption(&self, device: &DeviceView) -> String {
        match self.lang {
            Language::En => format!(
                "WireGuard config for “{}” ({}). It is shown only once: keep it. Re-issuing creates a new key and the old config stops working.",
                device.name, device.region_name
            ),
            Language::Ru => format!(
                "Конфигурация WireGuard для «{}» ({}). Она показывается только один раз — сохраните её. Перевыпуск создаёт новый ключ, и старая конфигурация перестаёт работать.",
                device.name, device.region_name
            ),
        }
    }

    pub fn qr_caption(&self) -> String {
        self.pick(
            "The same config as a QR code, for the WireGuard app on a phone.",
            "Та же конфигурация в виде QR-кода — для приложения WireGuard на телефоне.",
        )
    }

    pub fn instructions(&self) -> String {
        self.pick(
            "How to connect:\n• Phone: install the WireGuard app, tap “+” → “Scan from QR code” and scan the picture.\n• Computer: install WireGuard (wireguard.com/install), choose “Import tunnel(s) from file” and pick the .conf file.\n• Linux: sudo wg-quick up ./<file>.conf",
            "Как подключиться:\n• Телефон: установите приложение WireGuard, нажмите «+» → «Сканировать QR-код» и отсканируйте картинку.\n• Компьютер: установите WireGuard (wireguard.com/install), выберите «Импорт туннелей из файла» и укажите файл .conf.\n• Linux: sudo wg-quick up ./<файл>.conf",
        )
    }

    pub fn qr_failed(&self) -> String {
        self.pick(
            "The config is too long for a QR code; import the file instead.",
            "Конфигурация слишком длинная для QR-кода; импортируйте файл.",
        )
    }

    // --- My devices ------------------------------------------------------------------------

    pub fn no_devices(&self) -> String {
        self.pick("You have no devices yet.", "У вас пока нет устройств.")
    }

    pub fn devices_header(&self, count: usize, limit: u32) -> String {
        match self.lang {
            Language::En => format!("Your devices ({count} of {limit}):"),
            Language::Ru => format!("Ваши устройства ({count} из {limit}):"),
        }
    }

    pub fn device_line(&self, d: &DeviceView, now: DateTime<Utc>) -> String {
        let seen = match d.last_handshake_at {
            Some(_) if d.is_connected(now) => self.pick("🟢 connected", "🟢 подключено"),
            Some(at) => match self.lang {
                Language::En => format!("⚪ last handshake {}", date(at)),
                Language::Ru => format!("⚪ последнее соединение {}", date(at)),
            },
            None => self.pick("⚪ never connected", "⚪ ещё не подключалось"),
        };
        // rx is what the node received from the device: the device's upload.
        let (up, down) = (human_bytes(d.rx_bytes), human_bytes(d.tx_bytes));
        let line = match self.lang {
            Language::En => format!(
                "• {} — {}\n  created {}; {seen}\n  traffic: ↑ {up} ↓ {down}",
                d.name,
                d.region_name,
                date(d.created_at)
            ),
            Language::Ru => format!(
                "• {} — {}\n  создано {}; {seen}\n  трафик: ↑ {up} ↓ {down}",
                d.name,
                d.region_name,
                date(d.created_at)
            ),
        };
        if d.imported_config {
            format!("{line}\n  {}", self.imported_device_note())
        } else {
            line
        }
    }

    pub fn button_reissue(&self, name: &str) -> String {
        match self.lang {
            Language::En => format!("🔄 Re-issue {name}"),
            Language::Ru => format!("🔄 Перевыпустить {name}"),
        }
    }

    pub fn button_revoke(&self, name: &str) -> String {
        match self.lang {
            Language::En => format!("🗑 Revoke {name}"),
            Language::Ru => format!("🗑 Отозвать {name}"),
        }
    }

    pub fn confirm_revoke(&self, d: &DeviceView) -> String {
        match self.lang {
            Language::En => format!(
                "Revoke “{}” ({})? Its config stops working at once. This cannot be undone.",
                d.name, d.region_name
            ),
            Language::Ru => format!(
                "Отозвать «{}» ({})? Его конфигурация сразу перестанет работать. Это нельзя отменить.",
                d.name, d.region_name
            ),
        }
    }

    pub fn confirm_reissue(&self, d: &DeviceView) -> String {
        let question = match self.lang {
            Language::En => format!(
                "Re-issue “{}” ({})? You get a new config; the old one stops working.",
                d.name, d.region_name
            ),
            Language::Ru => format!(
                "Перевыпустить «{}» ({})? Вы получите новую конфигурацию, старая перестанет работать.",
                d.name, d.region_name
            ),
        };
        if d.imported_config {
            format!("{}\n\n{question}", self.reissue_imported_warning())
        } else {
            question
        }
    }

    pub fn button_yes_revoke(&self) -> String {
        self.pick("Yes, revoke", "Да, отозвать")
    }

    pub fn button_yes_reissue(&self) -> String {
        self.pick("Yes, re-issue", "Да, перевыпустить")
    }

    pub fn button_cancel(&self) -> String {
        self.pick("Cancel", "Отмена")
    }

    pub fn revoked(&self, d: &DeviceView) -> String {
        match self.lang {
            Language::En => format!("“{}” is revoked.", d.name),
            Language::Ru => format!("«{}» отозвано.", d.name),
        }
    }

    pub fn reissued(&self, d: &DeviceView) -> String {
        match self.lang {
            Language::En => format!(
                "“{}” has a new key. Your new config follows; the old one no longer works.",
                d.name
            ),
            Language::Ru => format!(
                "У «{}» новый ключ. Новая конфигурация ниже, старая больше не работает.",
                d.name
            ),
        }
    }
}

mod admin;
mod imported;
mod obfuscation;
mod outcomes;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{User, UserStatus};

    #[test]
    fn bytes_read_like_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(12_345), "12.3 KB");
        assert_eq!(human_bytes(4_500_000), "4.5 MB");
        assert_eq!(human_bytes(u64::MAX), "18446744.1 TB");
    }

    #[test]
    fn both_languages_differ_everywhere() {
        let (en, ru) = (Texts::new(Language::En), Texts::new(Language::Ru));
        for (a, b) in [
            (en.menu(), ru.menu()),
            (en.help(), ru.help()),
            (en.unknown(), ru.unknown()),
            (en.unavailable(), ru.unavailable()),
            (en.stale_button(), ru.stale_button()),
        ] {
            assert_ne!(a, b);
            assert!(!a.is_empty() && !b.is_empty());
        }
    }

    #[test]
    fn device_line_says_connected_last_seen_or_never() {
        let now = Utc::now();
        let mut device = DeviceView {
            id: 1,
            name: "phone".into(),
            region: "nl".parse().unwrap(),
            region_name: "Netherlands".into(),
            node: "nl-1".parse().unwrap(),
            protocol: pvpn_common::obfuscation::Protocol::WireGuard,
            address: "198.18.0.2".parse().unwrap(),
            public_key: pvpn_common::keys::KeyPair::generate().public,
            status: crate::service::DeviceStatus::Active,
            revoke_reason: None,
            created_at: now,
            reissued_at: None,
            imported_config: false,
            last_handshake_at: None,
            rx_bytes: 0,
            tx_bytes: 0,
        };
        let ru = Texts::new(Language::Ru);
        assert!(ru.device_line(&device, now).contains("ещё не подключалось"));
        device.last_handshake_at = Some(now - chrono::Duration::seconds(60));
        assert!(ru.device_line(&device, now).contains("подключено"));
        let hour_ago = now - chrono::Duration::hours(1);
        device.last_handshake_at = Some(hour_ago);
        let line = Texts::new(Language::En).device_line(&device, now);
        assert!(
            line.contains(&format!("last handshake {}", date(hour_ago))),
            "{line}"
        );
    }

    #[test]
    fn user_card_names_status() {
        let user = User {
            telegram_id: 5,
            username: Some("ann".into()),
            language: Language::En,
            status: UserStatus::Banned,
            device_limit: 3,
            access_expires_at: None,
            active_devices: 0,
            created_at: Utc::now(),
        };
        assert!(Texts::new(Language::En).user_card(&user).contains("banned"));
    }
}
