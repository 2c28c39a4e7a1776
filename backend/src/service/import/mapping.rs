//! The operator's mapping from the old server's peers to Telegram users: which public key belongs
//! to which Telegram id, and what the device is called.
//!
//! Three shapes, told apart by the first character: CSV (`public_key,telegram_id,device_name`,
//! an optional header line, `#` comments), a JSON array of objects, or JSON Lines (one object
//! per line). Objects have `public_key`, `telegram_id` and an optional `device_name`.

use pvpn_common::PublicKey;
use serde::Deserialize;

use super::{Location, Problem};
use pvpn_common::DeviceName;

/// One peer's owner, and where in the mapping it was said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingEntry {
    pub at: Location,
    pub public_key: PublicKey,
    pub telegram_id: i64,
    /// `None`: the import names the device.
    pub device_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEntry {
    public_key: String,
    telegram_id: i64,
    #[serde(default)]
    device_name: Option<String>,
}

/// Parses a mapping (named `source` in messages); every bad line or entry is reported.
pub fn parse_mapping(source: &str, text: &str) -> Result<Vec<MappingEntry>, Vec<Problem>> {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    let mut push =
        |at: Location, fields: Result<(String, i64, Option<String>), String>| match fields
            .and_then(|(key, id, name)| entry(at, &key, id, name))
        {
            Ok(e) => entries.push(e),
            Err(message) => problems.push(Problem::new(source, Some(at), message)),
        };
    match text.trim_start().chars().next() {
        Some('[') => match serde_json::from_str::<Vec<serde_json::Value>>(text) {
            Ok(values) => {
                for (index, value) in values.into_iter().enumerate() {
                    let fields = serde_json::from_value::<JsonEntry>(value)
                        .map(|e| (e.public_key, e.telegram_id, e.device_name))
                        .map_err(|e| e.to_string());
                    push(Location::Entry(index + 1), fields);
                }
            }
            Err(e) => push(
                Location::Line(e.line()),
                Err(format!("not a JSON array of mapping objects: {e}")),
            ),
        },
        Some('{') => {
            for (index, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let fields = serde_json::from_str::<JsonEntry>(line)
                    .map(|e| (e.public_key, e.telegram_id, e.device_name))
                    .map_err(|e| format!("not a mapping object: {e}"));
                push(Location::Line(index + 1), fields);
            }
        }
        _ => {
            for (index, line) in text.lines().enumerate() {
                let content = line.trim();
                if content.is_empty() || content.starts_with('#') {
                    continue;
                }
                if index == first_content_line(text) && is_header(content) {
                    continue;
                }
                push(Location::Line(index + 1), csv_fields(content));
            }
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

fn first_content_line(text: &str) -> usize {
    text.lines()
        .position(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        .unwrap_or(0)
}

fn is_header(line: &str) -> bool {
    line.split(',')
        .next()
        .is_some_and(|f| f.trim().eq_ignore_ascii_case("public_key"))
}

/// `key,telegram_id[,name]`; the name may be quoted (`"a, b"`, `""` for a quote) and is
/// everything after the second comma.
fn csv_fields(line: &str) -> Result<(String, i64, Option<String>), String> {
    let mut parts = line.splitn(3, ',');
    let key = parts.next().unwrap_or("").trim().to_string();
    let id = parts
        .next()
        .ok_or("expected `public_key,telegram_id,device_name`")?
        .trim();
    let id: i64 = id
        .parse()
        .map_err(|_| format!("telegram id {id:?} is not a number"))?;
    let name = parts.next().map(str::trim).filter(|n| !n.is_empty());
    let name = name.map(
        |n| match n.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
            Some(inner) => inner.replace("\"\"", "\""),
            None => n.to_string(),
        },
    );
    Ok((key, id, name))
}

fn entry(
    at: Location,
    key: &str,
    telegram_id: i64,
    device_name: Option<String>,
) -> Result<MappingEntry, String> {
    let public_key: PublicKey = key
        .trim()
        .parse()
        .map_err(|_| format!("{key:?} is not a WireGuard public key"))?;
    if telegram_id <= 0 {
        return Err(format!(
            "telegram id {telegram_id} is not a Telegram user id (they are positive)"
        ));
    }
    if let Some(name) = &device_name {
        DeviceName::new(name).map_err(|e| format!("device name {name:?}: {e}"))?;
    }
    Ok(MappingEntry {
        at,
        public_key,
        telegram_id,
        device_name: device_name.map(|n| n.trim().to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvpn_common::keys::KeyPair;

    #[test]
    fn reads_csv_with_header_comments_and_quoted_names() {
        let (a, b) = (KeyPair::generate().public, KeyPair::generate().public);
        let text = format!(
            "public_key,telegram_id,device_name\n# team\n{a},1001,phone\n{b},1002,\"a, \"\"b\"\"\"\n"
        );
        let entries = parse_mapping("map.csv", &text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].at, Location::Line(3));
        assert_eq!(entries[0].device_name.as_deref(), Some("phone"));
        assert_eq!(entries[1].device_name.as_deref(), Some("a, \"b\""));
    }

    #[test]
    fn reads_json_array_and_lines() {
        let a = KeyPair::generate().public;
        let array = format!("[{{\"public_key\":\"{a}\",\"telegram_id\":7}}]");
        let entries = parse_mapping("map.json", &array).unwrap();
        assert_eq!(
            (entries[0].at, entries[0].telegram_id),
            (Location::Entry(1), 7)
        );
        let lines = format!("{{\"public_key\":\"{a}\",\"telegram_id\":7,\"device_name\":\"x\"}}\n");
        assert_eq!(
            parse_mapping("map.jsonl", &lines).unwrap()[0].telegram_id,
            7
        );
    }

    #[test]
    fn names_bad_lines() {
        let a = KeyPair::generate().public;
        let text = format!("{a},1001,phone\n{a},abc\ngarbage\n{a},-5,x\n");
        let problems = parse_mapping("map.csv", &text).unwrap_err();
        let at: Vec<_> = problems.iter().map(|p| p.at).collect();
        assert_eq!(
            at,
            vec![
                Some(Location::Line(2)),
                Some(Location::Line(3)),
                Some(Location::Line(4))
            ]
        );
        assert!(problems[0].to_string().starts_with("map.csv:2: "));
    }
}
