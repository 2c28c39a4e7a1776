//! Slash commands: parsing a message text into a [`Command`], strictly.
//!
//! Admin commands parse like any other; whether the sender may use them is decided by the
//! handler tree, which answers non-admins exactly as it answers unknown commands. Which admin
//! commands exist, and whether they take arguments, is [`super::admin`]'s table.

pub use super::admin::AdminRequest;

/// A command a message asks for. Admin arguments stay text here; each admin unit validates them
/// into typed values (user references, dates, numbers) and answers with its usage on failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/start [payload]`: the payload is a deep-link start parameter (an invite code).
    Start(Option<String>),
    Help,
    Language,
    Menu,
    Admin(AdminRequest),
}

/// Telegram's limit on a start parameter.
const MAX_START_PAYLOAD: usize = 64;

/// Parses `text` if it is a command addressed to this bot (`/cmd` or `/cmd@bot_username`).
/// `None` for plain text, unknown commands, and commands for other bots.
pub fn parse(text: &str, bot_username: &str) -> Option<Command> {
    let text = text.trim();
    let rest = text.strip_prefix('/')?;
    let (head, args) = match rest.split_once(char::is_whitespace) {
        Some((head, args)) => (head, args.trim()),
        None => (rest, ""),
    };
    let name = match head.split_once('@') {
        Some((name, to)) if to.eq_ignore_ascii_case(bot_username) => name,
        Some(_) => return None,
        None => head,
    };
    let words: Vec<String> = args.split_whitespace().map(str::to_string).collect();
    let one = || (words.len() == 1).then(|| words[0].clone());
    let none = words.is_empty();
    let command = match name.to_ascii_lowercase().as_str() {
        "start" => {
            let payload = one().filter(|p| {
                p.len() <= MAX_START_PAYLOAD
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
            Command::Start(payload)
        }
        "help" if none => Command::Help,
        "language" if none => Command::Language,
        "menu" if none => Command::Menu,
        other => {
            let unit = super::admin::unit(other)?;
            if !unit.takes_arguments && !none {
                return None;
            }
            Command::Admin(AdminRequest { unit, args: words })
        }
    };
    Some(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOT: &str = "pvpn_bot";

    #[test]
    fn user_commands() {
        assert_eq!(parse("/start", BOT), Some(Command::Start(None)));
        assert_eq!(
            parse("/start AbC_12-x", BOT),
            Some(Command::Start(Some("AbC_12-x".into())))
        );
        assert_eq!(parse("/start bad code!", BOT), Some(Command::Start(None)));
        assert_eq!(parse("/help@pvpn_bot", BOT), Some(Command::Help));
        assert_eq!(parse("/HELP", BOT), Some(Command::Help));
        assert_eq!(parse("/language", BOT), Some(Command::Language));
    }

    #[test]
    fn not_commands() {
        for text in [
            "hello",
            "",
            "/",
            "/help@other_bot",
            "/unknown",
            "/help me",
            " x /help",
        ] {
            assert_eq!(parse(text, BOT), None, "{text:?}");
        }
    }

    #[test]
    fn admin_commands_keep_their_arguments() {
        let admin = |text: &str| match parse(text, BOT) {
            Some(Command::Admin(request)) => Some((request.unit.name, request.args)),
            _ => None,
        };
        assert_eq!(admin("/status"), Some(("status", vec![])));
        assert_eq!(admin("/status now"), None, "takes no arguments");
        assert_eq!(admin("/admin x"), None);
        assert_eq!(admin("/ban @ann"), Some(("ban", vec!["@ann".into()])));
        assert_eq!(admin("/BAN"), Some(("ban", vec![])));
        assert_eq!(
            admin("/ban a b"),
            Some(("ban", vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            admin("/limit 5   7"),
            Some(("limit", vec!["5".into(), "7".into()]))
        );
        assert_eq!(admin("/banish 1"), None);
    }
}
