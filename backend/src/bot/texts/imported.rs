//! Texts about devices brought over from the operator's previous WireGuard server
//! (`pvpnctl import`): PVPN never had their private keys, so it cannot show their configs, and
//! the users need none — the configs they have keep working.

use super::Texts;

impl Texts {
    /// Under an imported device in "My devices".
    pub fn imported_device_note(&self) -> String {
        self.pick(
            "📦 moved from the previous server: your existing config keeps working, there is nothing to install (re-issue only if you lost it)",
            "📦 перенесено со старого сервера: ваша прежняя конфигурация продолжает работать, ничего устанавливать не нужно (перевыпустите, только если потеряли её)",
        )
    }

    /// Added to the re-issue question of an imported device.
    pub fn reissue_imported_warning(&self) -> String {
        self.pick(
            "This device still uses the config from the previous server, which keeps working as it is. Re-issue only if you lost it: the new config replaces it on the device.",
            "Это устройство использует конфигурацию со старого сервера, и она продолжает работать. Перевыпускайте, только если потеряли её: новую конфигурацию нужно будет установить на устройство.",
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::bot::texts::Texts;
    use crate::service::Language;

    #[test]
    fn both_languages_say_it() {
        let (en, ru) = (Texts::new(Language::En), Texts::new(Language::Ru));
        assert!(en.imported_device_note().contains("keeps working"));
        assert!(ru.imported_device_note().contains("продолжает работать"));
        assert_ne!(en.reissue_imported_warning(), ru.reissue_imported_warning());
    }
}
