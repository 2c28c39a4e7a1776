//! Texts for refusals and failures: one per outcome the service layer or the bot tells apart.

use std::time::Duration;

use super::Texts;
use crate::service::{Language, ServiceError};

impl Texts {
    /// The message for a service error. `Unavailable` and `Internal` never show their details.
    pub fn service_error(&self, err: &ServiceError) -> String {
        match err {
            ServiceError::NotRegistered => self.pick(
                "You are not registered yet. Send /start to begin.",
                "Вы ещё не зарегистрированы. Отправьте /start, чтобы начать.",
            ),
            ServiceError::RegistrationClosed => self.pick(
                "Registration is closed. Ask the administrator for access.",
                "Регистрация закрыта. Обратитесь к администратору за доступом.",
            ),
            ServiceError::InviteRequired => self.pick(
                "Registration is by invitation only. Open the invite link you were given.",
                "Регистрация только по приглашениям. Откройте ссылку-приглашение, которую вам дали.",
            ),
            ServiceError::InvalidInvite => self.pick(
                "This invite link is not valid: it is used up, expired or mistyped.",
                "Эта ссылка-приглашение недействительна: она использована, истекла или набрана с ошибкой.",
            ),
            ServiceError::Banned => self.pick(
                "Your access is blocked. Contact the administrator if you think this is a mistake.",
                "Ваш доступ заблокирован. Обратитесь к администратору, если считаете это ошибкой.",
            ),
            ServiceError::AccessExpired => self.pick(
                "Your access has expired. Contact the administrator to extend it.",
                "Срок вашего доступа истёк. Обратитесь к администратору, чтобы продлить его.",
            ),
            ServiceError::DeviceLimitReached { limit } => match self.lang {
                Language::En => format!(
                    "You already have the maximum of {limit} devices. Revoke one in “My devices” to add another."
                ),
                Language::Ru => format!(
                    "У вас уже максимум устройств: {limit}. Отзовите одно в «Моих устройствах», чтобы добавить новое."
                ),
            },
            ServiceError::RegionNotFound => self.pick(
                "This region is no longer offered. Choose another one.",
                "Этот регион больше не доступен. Выберите другой.",
            ),
            ServiceError::RegionUnavailable => self.pick(
                "This region takes no new devices right now. Choose another one.",
                "Этот регион сейчас не принимает новые устройства. Выберите другой.",
            ),
            ServiceError::RegionFull => self.pick(
                "This region is full. Choose another one or try again later.",
                "В этом регионе нет свободных мест. Выберите другой или попробуйте позже.",
            ),
            ServiceError::DeviceNotFound => self.stale_button(),
            ServiceError::UserNotFound => self.pick("No such user.", "Пользователь не найден."),
            ServiceError::NodeNotFound => self.pick("No such node.", "Узел не найден."),
            ServiceError::InvalidInput(why) => match self.lang {
                Language::En => format!("That is not valid: {why}."),
                Language::Ru => format!("Неверные данные: {why}."),
            },
            ServiceError::Conflict(why) => match self.lang {
                Language::En => format!("That conflicts with the current state: {why}."),
                Language::Ru => format!("Это противоречит текущему состоянию: {why}."),
            },
            ServiceError::Unavailable(_) | ServiceError::Contention => self.unavailable(),
            ServiceError::Internal(_) => self.internal_error(),
        }
    }

    pub fn unavailable(&self) -> String {
        self.pick(
            "The service is temporarily unavailable. Please try again in a minute.",
            "Сервис временно недоступен. Пожалуйста, попробуйте через минуту.",
        )
    }

    pub fn internal_error(&self) -> String {
        self.pick(
            "Something went wrong on our side. Please try again later.",
            "Что-то пошло не так на нашей стороне. Пожалуйста, попробуйте позже.",
        )
    }

    /// A button for something that is gone or not the presser's: nothing was changed.
    pub fn stale_button(&self) -> String {
        self.pick(
            "This button is outdated or not yours: nothing was changed.",
            "Эта кнопка устарела или относится не к вам: ничего не изменено.",
        )
    }

    /// A button whose payload does not parse (a forged or garbled press).
    pub fn invalid_button(&self) -> String {
        self.pick(
            "This button is not valid: nothing was changed.",
            "Эта кнопка недействительна: ничего не изменено.",
        )
    }

    pub fn rate_limited(&self, retry_after: Duration) -> String {
        let secs = retry_after.as_secs().max(1);
        match self.lang {
            Language::En => {
                format!("You are doing that too often. Please wait {secs} s and try again.")
            }
            Language::Ru => {
                format!("Слишком часто. Подождите {secs} с и попробуйте снова.")
            }
        }
    }

    pub fn expired_notice(&self) -> String {
        self.pick(
            "Your access has expired and your devices were disconnected. Contact the administrator to extend it.",
            "Срок вашего доступа истёк, устройства отключены. Обратитесь к администратору, чтобы продлить его.",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_facing_outcome_has_its_own_message() {
        let errors = [
            ServiceError::NotRegistered,
            ServiceError::RegistrationClosed,
            ServiceError::InviteRequired,
            ServiceError::InvalidInvite,
            ServiceError::Banned,
            ServiceError::AccessExpired,
            ServiceError::DeviceLimitReached { limit: 3 },
            ServiceError::RegionNotFound,
            ServiceError::RegionUnavailable,
            ServiceError::RegionFull,
            ServiceError::DeviceNotFound,
            ServiceError::Unavailable("db".into()),
            ServiceError::Internal("bug".into()),
        ];
        for lang in [Language::En, Language::Ru] {
            let t = Texts::new(lang);
            let texts: Vec<String> = errors.iter().map(|e| t.service_error(e)).collect();
            let unique: std::collections::HashSet<&String> = texts.iter().collect();
            assert_eq!(unique.len(), texts.len(), "{texts:#?}");
        }
    }

    #[test]
    fn failures_never_show_their_details() {
        let t = Texts::new(Language::En);
        let secret = "password=hunter2 at 10.0.0.1";
        assert!(
            !t.service_error(&ServiceError::Unavailable(secret.into()))
                .contains("hunter2")
        );
        assert!(
            !t.service_error(&ServiceError::Internal(secret.into()))
                .contains("hunter2")
        );
    }
}
