//! Texts about AmneziaWG (obfuscated) regions: how they are marked, which app an AmneziaWG config
//! needs, the nudge for a device that never connected, and the notice that a node's
//! configuration changed.
//!
//! App links are the projects' own: amnezia.org's download page, the AmneziaVPN App Store page
//! and the AmneziaWG Google Play page that the `amnezia-client` and `amneziawg-android` READMEs
//! link, and the GitHub releases of `amnezia-client` and `amneziawg-windows-client` (GitHub
//! stays reachable where amnezia.org is blocked).

use super::Texts;
use crate::service::{DeviceView, Language, RegionView};

/// AmneziaVPN for every platform, from the project's site.
pub const AMNEZIA_DOWNLOADS: &str = "https://amnezia.org/downloads";
/// AmneziaVPN releases on GitHub (Windows, macOS, Linux, Android APK).
pub const AMNEZIA_VPN_RELEASES: &str = "https://github.com/amnezia-vpn/amnezia-client/releases";
/// AmneziaVPN for iPhone, iPad and Apple silicon Macs.
pub const AMNEZIA_VPN_APP_STORE: &str = "https://apps.apple.com/us/app/amneziavpn/id1600529900";
/// The AmneziaWG app for Android.
pub const AMNEZIA_WG_GOOGLE_PLAY: &str =
    "https://play.google.com/store/apps/details?id=org.amnezia.awg";
/// The AmneziaWG app for Windows.
pub const AMNEZIA_WG_WINDOWS: &str =
    "https://github.com/amnezia-vpn/amneziawg-windows-client/releases";

/// Marks an obfuscated region on its button.
const SHIELD: &str = "🛡";

impl Texts {
    /// The region's name on its button, marked when it is obfuscated.
    pub(super) fn region_label(&self, region: &RegionView) -> String {
        if region.is_obfuscated() {
            format!("{SHIELD} {}", region.display_name)
        } else {
            region.display_name.clone()
        }
    }

    /// Under the region picker when an offered region is obfuscated: what the mark means.
    pub fn obfuscated_legend(&self) -> String {
        self.pick(
            "🛡 — obfuscated (AmneziaWG): works where plain WireGuard is blocked; needs the AmneziaVPN or AmneziaWG app.",
            "🛡 — с маскировкой (AmneziaWG): работает там, где обычный WireGuard блокируют; нужно приложение AmneziaVPN или AmneziaWG.",
        )
    }

    pub fn awg_config_caption(&self, device: &DeviceView) -> String {
        match self.lang {
            Language::En => format!(
                "AmneziaWG config for “{}” ({}). It opens in the AmneziaVPN or AmneziaWG app, not in the plain WireGuard app. It is shown only once: keep it. Re-issuing creates a new key and the old config stops working.",
                device.name, device.region_name
            ),
            Language::Ru => format!(
                "Конфигурация AmneziaWG для «{}» ({}). Она открывается в приложении AmneziaVPN или AmneziaWG, а не в обычном WireGuard. Она показывается только один раз — сохраните её. Перевыпуск создаёт новый ключ, и старая конфигурация перестаёт работать.",
                device.name, device.region_name
            ),
        }
    }

    pub fn awg_qr_caption(&self) -> String {
        self.pick(
            "The same config as a QR code, for the AmneziaVPN or AmneziaWG app on a phone.",
            "Та же конфигурация в виде QR-кода — для приложения AmneziaVPN или AmneziaWG на телефоне.",
        )
    }

    /// How to connect with an AmneziaWG config: which app, with its official links.
    pub fn awg_instructions(&self) -> String {
        match self.lang {
            Language::En => format!(
                "This region uses AmneziaWG, which keeps working where WireGuard is blocked. The plain WireGuard app cannot open this config: install AmneziaVPN or AmneziaWG.\n\
                 • iPhone, iPad, Mac: AmneziaVPN — {AMNEZIA_VPN_APP_STORE}\n\
                 • Android: AmneziaWG — {AMNEZIA_WG_GOOGLE_PLAY}\n\
                 • Windows: AmneziaWG — {AMNEZIA_WG_WINDOWS}\n\
                 • Any system: AmneziaVPN — {AMNEZIA_DOWNLOADS} (if the site does not open: {AMNEZIA_VPN_RELEASES})\n\
                 In the app, add a tunnel or connection from the QR code or from the .conf file.\n\
                 • Linux: sudo awg-quick up ./<file>.conf (amneziawg-tools)"
            ),
            Language::Ru => format!(
                "В этом регионе используется AmneziaWG — он работает там, где WireGuard блокируют. Обычное приложение WireGuard эту конфигурацию не откроет: установите AmneziaVPN или AmneziaWG.\n\
                 • iPhone, iPad, Mac: AmneziaVPN — {AMNEZIA_VPN_APP_STORE}\n\
                 • Android: AmneziaWG — {AMNEZIA_WG_GOOGLE_PLAY}\n\
                 • Windows: AmneziaWG — {AMNEZIA_WG_WINDOWS}\n\
                 • Любая система: AmneziaVPN — {AMNEZIA_DOWNLOADS} (если сайт не открывается: {AMNEZIA_VPN_RELEASES})\n\
                 В приложении добавьте туннель или подключение из QR-кода или из файла .conf.\n\
                 • Linux: sudo awg-quick up ./<файл>.conf (amneziawg-tools)"
            ),
        }
    }

    /// The nudge for a device that never connected, probably because WireGuard is blocked
    /// where its user is.
    pub fn blocked_device_nudge(&self, device: &DeviceView) -> String {
        match self.lang {
            Language::En => format!(
                "“{}” ({}) has not connected since its config was issued. If WireGuard is blocked where you are, an obfuscated region (🛡, AmneziaWG) usually works: press a region below to get a new config there. You can revoke “{}” if you do not need it any more.",
                device.name, device.region_name, device.name
            ),
            Language::Ru => format!(
                "«{}» ({}) ни разу не подключилось с тех пор, как была выдана конфигурация. Если у вас блокируют WireGuard, обычно помогает регион с маскировкой (🛡, AmneziaWG): нажмите на регион ниже, чтобы получить там новую конфигурацию. «{}» можно отозвать, если оно больше не нужно.",
                device.name, device.region_name, device.name
            ),
        }
    }

    /// The button under the nudge that grants a device in an obfuscated region.
    pub fn button_new_device_in(&self, region: &RegionView) -> String {
        match self.lang {
            Language::En => format!("➕ New device in {}", self.region_label(region)),
            Language::Ru => format!("➕ Новое устройство: {}", self.region_label(region)),
        }
    }

    /// `pvpnctl node notify-reissue`: the node of these devices changed its configuration.
    pub fn node_changed_notice(&self, devices: &[DeviceView]) -> String {
        let names = devices
            .iter()
            .map(|d| match self.lang {
                Language::En => format!("“{}” ({})", d.name, d.region_name),
                Language::Ru => format!("«{}» ({})", d.name, d.region_name),
            })
            .collect::<Vec<_>>()
            .join(", ");
        match self.lang {
            Language::En => format!(
                "The server of {names} changed its settings: the config you have stops working. Press “Re-issue” to get a new config and import it in place of the old one."
            ),
            Language::Ru => format!(
                "Сервер для {names} сменил настройки: ваша конфигурация перестаёт работать. Нажмите «Перевыпустить», чтобы получить новую конфигурацию, и импортируйте её вместо старой."
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_links_are_in_both_languages() {
        for lang in [Language::En, Language::Ru] {
            let text = Texts::new(lang).awg_instructions();
            for link in [
                AMNEZIA_DOWNLOADS,
                AMNEZIA_VPN_RELEASES,
                AMNEZIA_VPN_APP_STORE,
                AMNEZIA_WG_GOOGLE_PLAY,
                AMNEZIA_WG_WINDOWS,
            ] {
                assert!(text.contains(link), "{lang:?} lacks {link}");
            }
            assert!(text.contains("awg-quick"));
        }
        assert_ne!(
            Texts::new(Language::En).awg_instructions(),
            Texts::new(Language::Ru).awg_instructions()
        );
    }
}
