//! The HTTP side of the local Bot API server: `POST /bot<token>/<method>` with a JSON or
//! multipart body, answered the way api.telegram.org answers teloxide.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

use super::Shared;
use super::model::{
    Attachment, BotMessage, CallbackAnswer, ChatEventKind, RecordedRequest, UploadedFile,
};

/// Longest `getUpdates` long poll the server holds open, whatever the bot asks for.
const MAX_LONG_POLL: Duration = Duration::from_secs(30);

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{bot_token}/{method}", post(handle))
        .with_state(shared)
}

/// A Bot API error answer (`{"ok":false,...}`) with the same HTTP status.
struct ApiError(StatusCode, String);

fn ok(result: Value) -> Response {
    axum::Json(json!({ "ok": true, "result": result })).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "ok": false, "error_code": self.0.as_u16(), "description": self.1 });
        (self.0, axum::Json(body)).into_response()
    }
}

fn bad_request(what: impl Into<String>) -> ApiError {
    ApiError(
        StatusCode::BAD_REQUEST,
        format!("Bad Request: {}", what.into()),
    )
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Path((bot_token, method)): Path<(String, String)>,
    request: Request,
) -> Response {
    if bot_token.strip_prefix("bot") != Some(shared.token.as_str()) {
        return ApiError(StatusCode::UNAUTHORIZED, "Unauthorized".into()).into_response();
    }
    let recorded = match read_request(method.to_ascii_lowercase(), request).await {
        Ok(r) => r,
        Err(e) => {
            shared.protocol_error(format!("{method}: unreadable request: {e}"));
            return bad_request(e).into_response();
        }
    };
    shared.record(recorded.clone());
    match answer(&shared, &recorded).await {
        Ok(result) => ok(result),
        Err(e) => e.into_response(),
    }
}

async fn read_request(method: String, request: Request) -> Result<RecordedRequest, String> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let mut params = Map::new();
    let mut files = Vec::new();
    if is_multipart {
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| format!("multipart: {e}"))?;
        while let Some(field) = multipart.next_field().await.map_err(|e| e.to_string())? {
            let name = field.name().unwrap_or_default().to_string();
            let file_name = field.file_name().map(str::to_string);
            let bytes = field.bytes().await.map_err(|e| e.to_string())?;
            if file_name.is_some() {
                files.push(UploadedFile {
                    part_name: name,
                    file_name,
                    bytes: bytes.to_vec(),
                });
            } else {
                let text = String::from_utf8(bytes.to_vec())
                    .map_err(|_| format!("multipart field {name} is not UTF-8"))?;
                params.insert(name, Value::String(text));
            }
        }
    } else {
        let body = Bytes::from_request(request, &())
            .await
            .map_err(|e| e.to_string())?;
        if !body.is_empty() {
            match serde_json::from_slice(&body).map_err(|e| format!("JSON body: {e}"))? {
                Value::Object(map) => params = map,
                other => return Err(format!("JSON body is not an object: {other}")),
            }
        }
    }
    Ok(RecordedRequest {
        method,
        params,
        files,
    })
}

async fn answer(shared: &Shared, req: &RecordedRequest) -> Result<Value, ApiError> {
    match req.method.as_str() {
        "getme" => Ok(shared.get_me()),
        "getwebhookinfo" => Ok(json!({
            "url": "",
            "has_custom_certificate": false,
            "pending_update_count": shared.lock().pending.len(),
        })),
        "deletewebhook" | "setmycommands" | "deletemessage" => Ok(json!(true)),
        "getupdates" => Ok(get_updates(shared, req).await),
        "sendmessage" => {
            let text = req
                .param_text("text")
                .ok_or_else(|| bad_request("message text is empty"))?;
            send(shared, req, Some(text), Attachment::None)
        }
        "senddocument" => {
            let file = attached_file(req, "document")?;
            send(
                shared,
                req,
                req.param_text("caption"),
                Attachment::Document(file),
            )
        }
        "sendphoto" => {
            let file = attached_file(req, "photo")?;
            send(
                shared,
                req,
                req.param_text("caption"),
                Attachment::Photo(file),
            )
        }
        "editmessagetext" => {
            let text = req
                .param_text("text")
                .ok_or_else(|| bad_request("message text is empty"))?;
            edit(shared, req, Some(text))
        }
        "editmessagereplymarkup" => edit(shared, req, None),
        "answercallbackquery" => {
            let id = req
                .param_text("callback_query_id")
                .ok_or_else(|| bad_request("query id is missing"))?;
            let answer = CallbackAnswer {
                text: req.param_text("text"),
                show_alert: req.params.get("show_alert") == Some(&json!(true)),
            };
            let mut inner = shared.lock();
            if inner.callback_answers.contains_key(&id) {
                return Err(bad_request("query is too old or query ID is invalid"));
            }
            inner.callback_answers.insert(id, answer);
            drop(inner);
            shared.changed.notify_waiters();
            Ok(json!(true))
        }
        other => {
            shared.protocol_error(format!("the bot called an unsupported method {other}"));
            Err(ApiError(
                StatusCode::NOT_FOUND,
                "Not Found: method not found".into(),
            ))
        }
    }
}

/// Long poll: confirm updates below `offset`, then return pending ones of the allowed kinds, or
/// wait for one until `timeout` seconds pass.
async fn get_updates(shared: &Shared, req: &RecordedRequest) -> Value {
    let offset = req.param_i64("offset").unwrap_or(0);
    let limit = req.param_i64("limit").unwrap_or(100).clamp(1, 100) as usize;
    let timeout = Duration::from_secs(req.param_i64("timeout").unwrap_or(0).max(0) as u64);
    let allowed: Option<Vec<String>> = req.param_json("allowed_updates").and_then(|v| {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
    });
    let found = shared
        .wait_for(timeout.min(MAX_LONG_POLL), |inner| {
            inner
                .pending
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            let mut refused = Vec::new();
            if let Some(allowed) = &allowed {
                inner.pending.retain(|u| {
                    let kind = update_kind(u);
                    let keep = allowed.iter().any(|a| a == &kind);
                    if !keep {
                        refused.push(kind);
                    }
                    keep
                });
            }
            inner.protocol_errors.extend(refused.into_iter().map(|kind| {
                format!("the bot does not ask for {kind} updates (allowed_updates), Telegram would drop them")
            }));
            (!inner.pending.is_empty())
                .then(|| inner.pending.iter().take(limit).cloned().collect::<Vec<_>>())
        })
        .await;
    Value::Array(found.unwrap_or_default())
}

fn update_kind(update: &Value) -> String {
    update
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "update_id").cloned())
        .unwrap_or_default()
}

/// The file a send method uploads: `<param>=attach://<id>` with a part named `<id>`, or a part
/// named like the parameter itself.
fn attached_file(req: &RecordedRequest, param: &str) -> Result<UploadedFile, ApiError> {
    let part = match req.param_text(param) {
        Some(value) => value
            .strip_prefix("attach://")
            .map(str::to_string)
            .ok_or_else(|| bad_request(format!("{param}: only uploads are supported here")))?,
        None => param.to_string(),
    };
    req.files
        .iter()
        .find(|f| f.part_name == part)
        .cloned()
        .ok_or_else(|| bad_request(format!("{param}: no uploaded part named {part:?}")))
}

fn chat_id(req: &RecordedRequest) -> Result<i64, ApiError> {
    req.param_i64("chat_id")
        .ok_or_else(|| bad_request("chat_id is missing or not a number"))
}

fn send(
    shared: &Shared,
    req: &RecordedRequest,
    text: Option<String>,
    attachment: Attachment,
) -> Result<Value, ApiError> {
    let chat_id = chat_id(req)?;
    let mut inner = shared.lock();
    let message = BotMessage {
        chat_id,
        message_id: inner.next_message_id(),
        date: super::now_unix(),
        text,
        attachment,
        reply_markup: req.param_json("reply_markup"),
    };
    inner.push_event(ChatEventKind::Sent, message.clone());
    drop(inner);
    shared.changed.notify_waiters();
    Ok(shared.message_json(&message))
}

/// `editMessageText` (`text` is `Some`) or `editMessageReplyMarkup`. As on Telegram, a missing
/// `reply_markup` removes the inline keyboard, and an edit that changes nothing is refused.
fn edit(shared: &Shared, req: &RecordedRequest, text: Option<String>) -> Result<Value, ApiError> {
    let chat_id = chat_id(req)?;
    let message_id = req
        .param_i64("message_id")
        .ok_or_else(|| bad_request("message_id is missing"))?;
    let mut inner = shared.lock();
    let old = inner
        .messages
        .get(&(chat_id, message_id))
        .cloned()
        .ok_or_else(|| bad_request("message to edit not found"))?;
    let mut new = old.clone();
    if let Some(text) = text {
        if !matches!(old.attachment, Attachment::None) {
            return Err(bad_request("there is no text in the message to edit"));
        }
        new.text = Some(text);
    }
    new.reply_markup = req.param_json("reply_markup");
    if new.text == old.text && new.reply_markup == old.reply_markup {
        return Err(bad_request(
            "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
        ));
    }
    inner.push_event(ChatEventKind::Edited, new.clone());
    drop(inner);
    shared.changed.notify_waiters();
    Ok(shared.message_json(&new))
}
