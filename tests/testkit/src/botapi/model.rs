//! What the local Bot API server stores and hands to tests: users, the messages the bot sent (as
//! the server keeps them, edits included), recorded requests and uploaded files, and the JSON
//! shapes of Telegram's objects built from them.

use serde_json::{Value, json};

/// A Telegram user (and their private chat, whose id is the same) that a test plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TgUser {
    pub id: i64,
    pub first_name: String,
    pub username: Option<String>,
    /// Telegram's IETF language tag for the user's client, such as `ru` or `en`.
    pub language_code: Option<String>,
}

impl TgUser {
    pub fn new(id: i64, first_name: &str, username: Option<&str>, language: Option<&str>) -> Self {
        Self {
            id,
            first_name: first_name.to_string(),
            username: username.map(str::to_string),
            language_code: language.map(str::to_string),
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut user = json!({ "id": self.id, "is_bot": false, "first_name": self.first_name });
        if let Some(name) = &self.username {
            user["username"] = json!(name);
        }
        if let Some(lang) = &self.language_code {
            user["language_code"] = json!(lang);
        }
        user
    }

    pub(crate) fn private_chat_json(&self) -> Value {
        let mut chat = json!({ "id": self.id, "type": "private", "first_name": self.first_name });
        if let Some(name) = &self.username {
            chat["username"] = json!(name);
        }
        chat
    }
}

/// A file the bot uploaded (a multipart part with a file name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedFile {
    /// The multipart part's name (the `<id>` of `attach://<id>`, or the parameter name).
    pub part_name: String,
    pub file_name: Option<String>,
    pub bytes: Vec<u8>,
}

/// One HTTP request the bot made.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The method name in lowercase (`sendmessage`).
    pub method: String,
    /// JSON body fields, or multipart text parts (as JSON strings).
    pub params: serde_json::Map<String, Value>,
    pub files: Vec<UploadedFile>,
}

impl RecordedRequest {
    /// A parameter as text, whether it came as a JSON string or as a JSON number/bool.
    pub fn param_text(&self, name: &str) -> Option<String> {
        match self.params.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }

    /// A parameter holding JSON, whether sent as a JSON value or as JSON text in a multipart part.
    pub fn param_json(&self, name: &str) -> Option<Value> {
        match self.params.get(name)? {
            Value::String(s) => serde_json::from_str(s).ok(),
            other => Some(other.clone()),
        }
    }

    /// A parameter as an integer (`chat_id`, `message_id`), from a number or a decimal string.
    pub fn param_i64(&self, name: &str) -> Option<i64> {
        match self.params.get(name)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
}

/// What a message the bot sent carries besides text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment {
    None,
    Document(UploadedFile),
    Photo(UploadedFile),
}

/// A message as the server keeps it: what the bot sent, updated by later edits.
#[derive(Debug, Clone)]
pub struct BotMessage {
    pub chat_id: i64,
    pub message_id: i64,
    pub date: i64,
    /// The text, or the caption of a document or photo.
    pub text: Option<String>,
    pub attachment: Attachment,
    /// The `reply_markup` parameter as sent, if any.
    pub reply_markup: Option<Value>,
}

impl BotMessage {
    pub fn text(&self) -> &str {
        self.text.as_deref().unwrap_or("")
    }

    /// Inline keyboard buttons as `(label, callback_data)`, row by row flattened.
    pub fn buttons(&self) -> Vec<(String, String)> {
        let Some(rows) = self
            .reply_markup
            .as_ref()
            .and_then(|m| m.get("inline_keyboard"))
            .and_then(Value::as_array)
        else {
            return Vec::new();
        };
        rows.iter()
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(|b| {
                Some((
                    b.get("text")?.as_str()?.to_string(),
                    b.get("callback_data")?.as_str()?.to_string(),
                ))
            })
            .collect()
    }

    /// The callback data of the first button whose label contains `label_part`.
    pub fn button_data(&self, label_part: &str) -> Option<String> {
        self.buttons()
            .into_iter()
            .find(|(label, _)| label.contains(label_part))
            .map(|(_, data)| data)
    }

    pub fn document(&self) -> Option<&UploadedFile> {
        match &self.attachment {
            Attachment::Document(f) => Some(f),
            _ => None,
        }
    }

    pub fn photo(&self) -> Option<&UploadedFile> {
        match &self.attachment {
            Attachment::Photo(f) => Some(f),
            _ => None,
        }
    }

    /// The Telegram `Message` object the server returns for this message.
    pub(crate) fn to_json(&self, bot: &Value) -> Value {
        let mut msg = json!({
            "message_id": self.message_id,
            "date": self.date,
            "chat": { "id": self.chat_id, "type": "private", "first_name": "Test" },
            "from": bot,
        });
        let file_id = format!("file-{}-{}", self.chat_id, self.message_id);
        match &self.attachment {
            Attachment::None => {
                msg["text"] = json!(self.text());
            }
            Attachment::Document(file) => {
                msg["document"] = json!({
                    "file_id": file_id,
                    "file_unique_id": file_id,
                    "file_name": file.file_name.clone().unwrap_or_default(),
                    "file_size": file.bytes.len(),
                });
            }
            Attachment::Photo(file) => {
                msg["photo"] = json!([{
                    "file_id": file_id,
                    "file_unique_id": file_id,
                    "width": 400,
                    "height": 400,
                    "file_size": file.bytes.len(),
                }]);
            }
        }
        if !matches!(self.attachment, Attachment::None)
            && let Some(caption) = &self.text
        {
            msg["caption"] = json!(caption);
        }
        if let Some(markup) = &self.reply_markup {
            msg["reply_markup"] = markup.clone();
        }
        msg
    }
}

/// Whether a chat event is a new message or an edit of an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatEventKind {
    Sent,
    Edited,
}

/// Something the bot did in a chat, in the order the server saw it.
#[derive(Debug, Clone)]
pub struct ChatEvent {
    pub kind: ChatEventKind,
    /// The message after this event.
    pub message: BotMessage,
}

/// The answer the bot gave to a button press (`answerCallbackQuery`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackAnswer {
    pub text: Option<String>,
    pub show_alert: bool,
}
