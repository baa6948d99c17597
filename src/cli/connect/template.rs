//! The placeholders of `--exec` arguments and `--env NAME=TEMPLATE` values, and their pure
//! expansion.
//!
//! `{{addr}}` (HOST:PORT of the local listener), `{{host}}`, `{{port}}`, and the session's
//! leased secrets: `{{secret.FIELD}}` (the one secret that has FIELD) or `{{secret.N.FIELD}}`
//! (the Nth of the target's `vault_secrets`, from 0). A secret may only go into the
//! environment: a command line is readable by every local user (`ps`, /proc). The older
//! single-brace `{host}` and `{port}` keep working in text. Something in double braces that
//! looks like a name (`{{adr}}`) and is not one of these is an error, never left as is;
//! anything else in double braces (Go templates such as `{{.Names}}`) is text.

use std::fmt;

use portcullis_proto::api::SessionSecrets;
use zeroize::Zeroizing;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Addr,
    Host,
    Port,
    Secret { index: Option<usize>, field: String },
}

/// One argument or environment value with its placeholders parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TemplateError {
    Unknown(String),
    Unclosed(String),
    NoSecrets(String),
    NoField { field: String, have: String },
    Ambiguous { field: String, count: usize },
    NoIndex { index: usize, count: usize },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(name) => write!(
                f,
                "unknown placeholder {{{{{name}}}}}: use {{{{addr}}}}, {{{{host}}}}, {{{{port}}}}, \
                 {{{{secret.FIELD}}}} or {{{{secret.N.FIELD}}}}"
            ),
            Self::Unclosed(text) => {
                write!(
                    f,
                    "a placeholder opened with {{{{ is not closed with }}}} in {text:?}"
                )
            }
            Self::NoSecrets(field) => write!(
                f,
                "the session has no leased secrets (its target names no vault_secrets), so \
                 {{{{secret.{field}}}}} has no value"
            ),
            Self::NoField { field, have } => write!(
                f,
                "no leased secret of the session has a field {field:?} (it has {have})"
            ),
            Self::Ambiguous { field, count } => write!(
                f,
                "{count} leased secrets of the session have a field {field:?}: name one by its \
                 place in the target's vault_secrets, e.g. {{{{secret.0.{field}}}}}"
            ),
            Self::NoIndex { index, count } => write!(
                f,
                "the session has {count} leased secret(s), numbered from 0: there is no \
                 secret {index}"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

impl Template {
    pub(crate) fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut text_run = String::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            text_run.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| TemplateError::Unclosed(text.to_owned()))?;
            let inner = after[..close].trim();
            match placeholder(inner)? {
                Some(piece) => {
                    if !text_run.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text_run)));
                    }
                    pieces.push(piece);
                }
                None => text_run.push_str(&rest[open..open + 2 + close + 2]),
            }
            rest = &after[close + 2..];
        }
        text_run.push_str(rest);
        if !text_run.is_empty() {
            pieces.push(Piece::Text(text_run));
        }
        Ok(Template { pieces })
    }

    /// Whether expanding it reads a leased secret.
    pub(crate) fn uses_secrets(&self) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Secret { .. }))
    }

    /// The text with every placeholder replaced (and `{host}`, `{port}` in text).
    pub(crate) fn expand(&self, at: &Context<'_>) -> Result<Zeroizing<String>, TemplateError> {
        let mut out = Zeroizing::new(String::new());
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(
                    &text
                        .replace("{host}", at.host)
                        .replace("{port}", &at.port.to_string()),
                ),
                Piece::Addr => out.push_str(&format!("{}:{}", at.host, at.port)),
                Piece::Host => out.push_str(at.host),
                Piece::Port => out.push_str(&at.port.to_string()),
                Piece::Secret { index, field } => {
                    out.push_str(at.secrets.field(*index, field)?);
                }
            }
        }
        Ok(out)
    }
}

/// What a `{{...}}` names: `None` for text that is not a placeholder's name at all.
fn placeholder(inner: &str) -> Result<Option<Piece>, TemplateError> {
    let looks_like_a_name = inner.starts_with(|c: char| c.is_ascii_alphabetic())
        && inner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !looks_like_a_name {
        return Ok(None);
    }
    let unknown = || TemplateError::Unknown(inner.to_owned());
    Ok(Some(match inner {
        "addr" => Piece::Addr,
        "host" => Piece::Host,
        "port" => Piece::Port,
        _ => {
            let rest = inner.strip_prefix("secret.").ok_or_else(unknown)?;
            let (index, field) = match rest.split_once('.') {
                Some((n, field)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    (Some(n.parse().map_err(|_| unknown())?), field)
                }
                _ => (None, rest),
            };
            if field.is_empty() {
                return Err(unknown());
            }
            Piece::Secret {
                index,
                field: field.to_owned(),
            }
        }
    }))
}

/// Where a template is expanded: the local listener and the session's secrets (fetched
/// only when some template needs them).
pub(crate) struct Context<'a> {
    pub host: &'a str,
    pub port: u16,
    pub secrets: &'a SecretValues,
}

/// A session's leased secrets in memory: each secret's fields as text (non-string values as
/// their JSON), wiped when dropped; `Debug` shows paths and field names only.
#[derive(Default)]
pub(crate) struct SecretValues {
    /// (path, [(field, value)]), in the target's order.
    secrets: Vec<(String, Fields)>,
}

type Fields = Vec<(String, Zeroizing<String>)>;

impl SecretValues {
    pub(crate) fn from_wire(wire: SessionSecrets) -> Self {
        let secrets = wire
            .secrets
            .into_iter()
            .map(|secret| {
                let fields = match secret.data {
                    serde_json::Value::Object(map) => map
                        .into_iter()
                        .map(|(name, value)| {
                            let text = match value {
                                serde_json::Value::String(s) => s,
                                other => other.to_string(),
                            };
                            (name, Zeroizing::new(text))
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                (secret.path, fields)
            })
            .collect();
        Self { secrets }
    }

    /// The value of `field` in secret `index`, or in the one secret that has it.
    pub(crate) fn field(&self, index: Option<usize>, field: &str) -> Result<&str, TemplateError> {
        if self.secrets.is_empty() {
            return Err(TemplateError::NoSecrets(field.to_owned()));
        }
        let candidates: Vec<&(String, Fields)> = match index {
            Some(n) => vec![self.secrets.get(n).ok_or(TemplateError::NoIndex {
                index: n,
                count: self.secrets.len(),
            })?],
            None => self.secrets.iter().collect(),
        };
        let found: Vec<&str> = candidates
            .iter()
            .filter_map(|(_, fields)| {
                fields
                    .iter()
                    .find(|(name, _)| name == field)
                    .map(|(_, v)| v.as_str())
            })
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(TemplateError::NoField {
                field: field.to_owned(),
                have: candidates
                    .iter()
                    .map(|(path, fields)| {
                        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
                        format!("{path}: {}", names.join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
            many => Err(TemplateError::Ambiguous {
                field: field.to_owned(),
                count: many.len(),
            }),
        }
    }
}

impl fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.secrets.iter().map(|(path, fields)| {
                (
                    path,
                    fields.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
                )
            }))
            .finish()
    }
}

/// `--env NAME=TEMPLATE`: a variable of the `--exec` command's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvTemplate {
    pub name: String,
    pub value: Template,
}

/// clap's parser of `--env`.
pub(crate) fn parse_env(text: &str) -> Result<EnvTemplate, String> {
    let (name, value) = text.split_once('=').ok_or_else(|| {
        format!("{text:?} is not NAME=TEMPLATE, e.g. PGPASSWORD={{{{secret.password}}}}")
    })?;
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "{name:?} is not an environment variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    Ok(EnvTemplate {
        name: name.to_owned(),
        value: Template::parse(value).map_err(|e| e.to_string())?,
    })
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
