//! The answers of the cluster-wide calls, read leniently: one entry that is not what the
//! API documents becomes a note and is skipped; only an answer whose shape is wrong as a
//! whole (no `data` list) is an error. Numbers Proxmox sometimes sends as strings (`vmid`,
//! `template`, `online`) are read either way.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

use crate::catalog::GuestType;

/// The `data` of a success answer (`{"data": ...}`); `null` when the body has none.
pub(crate) fn envelope(body: &[u8]) -> Result<Value, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut map)) => Ok(map.remove("data").unwrap_or(Value::Null)),
        Ok(_) => Err("the body is JSON but not an object with `data`".into()),
        Err(e) => Err(format!("the body is not JSON ({e})")),
    }
}

/// A number, or a number in a string, or a boolean.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Flex {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl Flex {
    pub(crate) fn as_u32(&self) -> Option<u32> {
        match self {
            Flex::Int(n) => u32::try_from(*n).ok(),
            Flex::Text(s) => s.trim().parse().ok(),
            Flex::Float(_) | Flex::Bool(_) => None,
        }
    }

    pub(crate) fn truthy(&self) -> bool {
        match self {
            Flex::Int(n) => *n != 0,
            Flex::Float(f) => *f != 0.0,
            Flex::Bool(b) => *b,
            Flex::Text(s) => matches!(s.trim(), "1" | "true"),
        }
    }
}

/// The `data` list of an answer, or why it is not one.
pub(crate) fn list(data: Value) -> Result<Vec<Value>, String> {
    match data {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(Vec::new()),
        other => Err(format!(
            "`data` is {} where a list was expected",
            kind(&other)
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// An entry of `GET /nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeEntry {
    pub name: String,
    pub online: bool,
    pub ssl_fingerprint: Option<String>,
}

#[derive(Deserialize)]
struct RawNode {
    node: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    ssl_fingerprint: Option<String>,
}

/// `GET /nodes`: the nodes and notes on entries skipped.
pub(crate) fn nodes(data: Value) -> Result<(Vec<NodeEntry>, Vec<String>), String> {
    let mut nodes = Vec::new();
    let mut notes = Vec::new();
    for entry in list(data)? {
        match serde_json::from_value::<RawNode>(entry) {
            Ok(raw) if is_name(&raw.node) => nodes.push(NodeEntry {
                online: raw.status.as_deref() == Some("online"),
                name: raw.node,
                ssl_fingerprint: raw.ssl_fingerprint,
            }),
            Ok(raw) => notes.push(format!(
                "a node named {:?} in /nodes was skipped: not a Proxmox node name",
                raw.node
            )),
            Err(e) => notes.push(format!("an entry of /nodes was skipped: {e}")),
        }
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes.dedup_by(|a, b| a.name == b.name);
    Ok((nodes, notes))
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    ip: Option<String>,
}

/// `GET /cluster/status`: each node's address (entries of type `node` with an `ip`).
pub(crate) fn node_addresses(
    data: Value,
) -> Result<(BTreeMap<String, IpAddr>, Vec<String>), String> {
    let mut out = BTreeMap::new();
    let mut notes = Vec::new();
    for entry in list(data)? {
        let Ok(raw) = serde_json::from_value::<RawStatus>(entry) else {
            notes.push("an entry of /cluster/status was skipped: not an object with a type".into());
            continue;
        };
        if raw.kind != "node" {
            continue;
        }
        let (Some(name), Some(ip)) = (raw.name, raw.ip) else {
            continue;
        };
        match ip.trim().parse::<IpAddr>() {
            Ok(addr) => {
                out.insert(name, addr);
            }
            Err(_) => notes.push(format!(
                "node {name}: /cluster/status gives the address {ip:?}, which is not an IP address; the node has none"
            )),
        }
    }
    Ok((out, notes))
}

/// A guest of `GET /cluster/resources?type=vm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resource {
    pub guest_type: GuestType,
    pub vmid: u32,
    pub name: String,
    pub node: String,
    pub status: String,
    pub template: bool,
    pub tags: Vec<String>,
    pub pool: Option<String>,
}

#[derive(Deserialize)]
struct RawResource {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    vmid: Option<Flex>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    template: Option<Flex>,
    #[serde(default)]
    tags: Option<String>,
    #[serde(default)]
    pool: Option<String>,
}

/// `GET /cluster/resources?type=vm`: the qemu and lxc guests (other types skipped silently,
/// malformed entries with a note), sorted by vmid.
pub(crate) fn resources(data: Value) -> Result<(Vec<Resource>, Vec<String>), String> {
    let mut guests = Vec::new();
    let mut notes = Vec::new();
    for entry in list(data)? {
        let raw = match serde_json::from_value::<RawResource>(entry) {
            Ok(raw) => raw,
            Err(e) => {
                notes.push(format!("an entry of /cluster/resources was skipped: {e}"));
                continue;
            }
        };
        let guest_type = match raw.kind.as_str() {
            "qemu" => GuestType::Qemu,
            "lxc" => GuestType::Lxc,
            _ => continue,
        };
        let Some(vmid) = raw.vmid.as_ref().and_then(Flex::as_u32) else {
            notes.push(format!(
                "a {} entry of /cluster/resources without a valid vmid was skipped",
                guest_type.as_str()
            ));
            continue;
        };
        let Some(node) = raw.node.filter(|n| is_name(n)) else {
            notes.push(format!(
                "{} {vmid} was skipped: /cluster/resources names no valid node for it",
                guest_type.as_str()
            ));
            continue;
        };
        guests.push(Resource {
            guest_type,
            vmid,
            name: raw.name.unwrap_or_default().trim().to_owned(),
            node,
            status: raw.status.unwrap_or_else(|| "unknown".into()),
            template: raw.template.as_ref().is_some_and(Flex::truthy),
            tags: split_tags(raw.tags.as_deref().unwrap_or("")),
            pool: raw.pool.filter(|p| !p.trim().is_empty()),
        });
    }
    guests.sort_by_key(|g| g.vmid);
    guests.dedup_by_key(|g| g.vmid);
    Ok((guests, notes))
}

/// Proxmox tags: split on `;`, `,` or whitespace, in Proxmox's order.
pub(crate) fn split_tags(text: &str) -> Vec<String> {
    text.split(|c: char| c == ';' || c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A node, VNet or IPAM name that can go into a request path as it is.
pub(crate) fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && text != "."
        && text != ".."
}

#[cfg(test)]
mod tests;
