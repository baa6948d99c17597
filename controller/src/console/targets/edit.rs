//! The target edit form as text, pure: a target's fields as the form shows them, and the
//! `PATCH /v1/targets/{id}` body of what the form changed (only what changed, so that a
//! zone or service the admin left alone is not checked against the policy again, as with
//! the API).

use std::collections::BTreeMap;

use portcullis_proto::api::{Target, UpdateTarget};

/// A form field that does not parse: the field and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every field of the edit form, as text (what the form shows and what it sent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EditValues {
    pub name: String,
    pub address: String,
    pub zone: String,
    pub service: String,
    pub vmid: String,
    /// Comma-separated.
    pub tags: String,
    pub pool: String,
    pub max_session_secs: String,
    pub connection_limit: String,
    /// One per line.
    pub ssh_host_keys: String,
    /// One per line.
    pub ssh_host_cas: String,
    pub vault_ssh_mount: String,
    pub vault_ssh_role: String,
    /// One per line.
    pub vault_secrets: String,
    pub proxmox_cluster: String,
    pub force: bool,
}

impl EditValues {
    /// A target's current values.
    pub(crate) fn of(t: &Target) -> EditValues {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        EditValues {
            name: t.name.clone(),
            address: t.address.clone(),
            zone: opt(&t.zone),
            service: opt(&t.service),
            vmid: t.vmid.map(|v| v.to_string()).unwrap_or_default(),
            tags: t.tags.join(", "),
            pool: opt(&t.pool),
            max_session_secs: t.max_session_secs.to_string(),
            connection_limit: t.connection_limit.to_string(),
            ssh_host_keys: t.ssh_host_keys.join("\n"),
            ssh_host_cas: t.ssh_host_cas.join("\n"),
            vault_ssh_mount: opt(&t.vault_ssh_mount),
            vault_ssh_role: opt(&t.vault_ssh_role),
            vault_secrets: t.vault_secrets.join("\n"),
            proxmox_cluster: opt(&t.proxmox_cluster),
            force: false,
        }
    }

    /// The values a form POST sent (a missing field reads as empty).
    pub(crate) fn from_form(fields: &BTreeMap<String, String>) -> EditValues {
        let get = |name: &str| fields.get(name).cloned().unwrap_or_default();
        EditValues {
            name: get("name"),
            address: get("address"),
            zone: get("zone"),
            service: get("service"),
            vmid: get("vmid"),
            tags: get("tags"),
            pool: get("pool"),
            max_session_secs: get("max_session_secs"),
            connection_limit: get("connection_limit"),
            ssh_host_keys: get("ssh_host_keys"),
            ssh_host_cas: get("ssh_host_cas"),
            vault_ssh_mount: get("vault_ssh_mount"),
            vault_ssh_role: get("vault_ssh_role"),
            vault_secrets: get("vault_secrets"),
            proxmox_cluster: get("proxmox_cluster"),
            force: fields.get("force").is_some_and(|v| v == "on"),
        }
    }

    /// The update that turns `current` into these values: only the fields that differ.
    pub(crate) fn changes(&self, current: &EditValues) -> Result<UpdateTarget, FieldError> {
        let mut update = UpdateTarget {
            force: self.force,
            ..UpdateTarget::default()
        };
        let (new, old) = (self, current);
        if new.name.trim() != old.name {
            update.name = Some(new.name.trim().to_owned());
        }
        if new.address.trim() != old.address {
            update.address = Some(new.address.trim().to_owned());
        }
        update.zone = optional(&new.zone, &old.zone);
        update.service = optional(&new.service, &old.service);
        update.pool = optional(&new.pool, &old.pool);
        update.vault_ssh_mount = optional(&new.vault_ssh_mount, &old.vault_ssh_mount);
        update.vault_ssh_role = optional(&new.vault_ssh_role, &old.vault_ssh_role);
        update.proxmox_cluster = optional(&new.proxmox_cluster, &old.proxmox_cluster);
        if new.vmid.trim() != old.vmid {
            update.vmid = Some(match new.vmid.trim() {
                "" => None,
                text => Some(number(
                    "vmid",
                    text,
                    "a Proxmox VMID such as 4012, or nothing",
                )?),
            });
        }
        let tags = list(&new.tags, ',');
        if tags != list(&old.tags, ',') {
            update.tags = Some(tags);
        }
        if new.max_session_secs.trim() != old.max_session_secs {
            update.max_session_secs = Some(number(
                "max_session_secs",
                new.max_session_secs.trim(),
                "seconds, e.g. 28800 for 8 hours",
            )?);
        }
        if new.connection_limit.trim() != old.connection_limit {
            update.connection_limit = Some(number(
                "connection_limit",
                new.connection_limit.trim(),
                "a number of connections, 0 for no limit",
            )?);
        }
        for (new, old, slot) in [
            (
                &new.ssh_host_keys,
                &old.ssh_host_keys,
                &mut update.ssh_host_keys,
            ),
            (
                &new.ssh_host_cas,
                &old.ssh_host_cas,
                &mut update.ssh_host_cas,
            ),
            (
                &new.vault_secrets,
                &old.vault_secrets,
                &mut update.vault_secrets,
            ),
        ] {
            let lines = list(new, '\n');
            if lines != list(old, '\n') {
                *slot = Some(lines);
            }
        }
        Ok(update)
    }
}

/// An optional text field: unchanged → `None`; emptied → `Some(None)` (clear it).
fn optional(new: &str, old: &str) -> Option<Option<String>> {
    let new = new.trim();
    (new != old).then(|| Some(new.to_owned()).filter(|v| !v.is_empty()))
}

/// The non-empty, trimmed items of a separated list.
fn list(text: &str, separator: char) -> Vec<String> {
    text.split(separator)
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

fn number<N: std::str::FromStr>(field: &str, text: &str, what: &str) -> Result<N, FieldError> {
    text.parse().map_err(|_| FieldError {
        field: field.to_owned(),
        message: format!("`{field}`: {text:?} is not a number; write {what}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> EditValues {
        EditValues {
            name: "web".into(),
            address: "127.0.0.1:7".into(),
            zone: "LOCAL".into(),
            service: "echo".into(),
            tags: "a, b".into(),
            max_session_secs: "3600".into(),
            connection_limit: "0".into(),
            ..EditValues::default()
        }
    }

    #[test]
    fn an_unchanged_form_changes_nothing() {
        let update = current().changes(&current()).unwrap();
        assert_eq!(
            format!("{update:?}"),
            format!("{:?}", UpdateTarget::default())
        );
    }

    #[test]
    fn only_what_changed_is_sent_and_an_emptied_field_is_cleared() {
        let mut new = current();
        new.tags = "a,  b , <script>".into();
        new.zone = " ".into();
        new.vmid = "4012".into();
        new.vault_secrets = "database/creds/ro\n\n".into();
        new.force = true;
        let update = new.changes(&current()).unwrap();
        let expected = UpdateTarget {
            tags: Some(vec!["a".into(), "b".into(), "<script>".into()]),
            zone: Some(None),
            vmid: Some(Some(4012)),
            vault_secrets: Some(vec!["database/creds/ro".into()]),
            force: true,
            ..UpdateTarget::default()
        };
        assert_eq!(format!("{update:?}"), format!("{expected:?}"));
    }

    #[test]
    fn a_number_that_does_not_parse_names_its_field() {
        let mut new = current();
        new.max_session_secs = "8h".into();
        let err = new.changes(&current()).unwrap_err();
        assert_eq!(err.field, "max_session_secs");
        assert!(err.message.contains("\"8h\" is not a number"), "{err:?}");
    }
}
