//! `portcullis targets`: list, show, create, update and delete targets.

use anyhow::{bail, Context as _};
use portcullis_proto::api::{CreateTarget, Target, UpdateTarget};

use super::http::{segment, ApiClient, ClientArgs};
use super::output::{self, Table};
use super::resource::{ListArgs, Resource, ShowArgs};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum TargetsCommand {
    /// List the targets: hand-made and discovered ones (docs/proxmox.md).
    #[command(after_help = "\
Examples:
  portcullis targets list
  portcullis targets list --source manual      # only the hand-made ones
  portcullis targets list --source proxmox     # only the discovered ones
  portcullis targets list --json | jq -r '.[].name'

In a deployment:
  portcullis targets list --source homelab     # only those of one [[catalog.proxmox]] cluster

SOURCE is `manual` for a hand-made target, else CLUSTER:KEY (e.g. homelab:qemu/100), with
`(unavailable)` for a template or a stopped guest.")]
    List(TargetListArgs),
    /// Show one target.
    #[command(after_help = "\
Examples:
  portcullis targets show echo
  portcullis targets show echo --json | jq -r .address")]
    Show(ShowArgs),
    /// Create a target (needs `targets:admin`).
    #[command(after_help = "\
Examples:
  # With `portcullis dev`, whose policy knows the zone LOCAL (127.0.0.0/8) and the service echo:
  portcullis targets create web --address 127.0.0.1:8080 --service echo
  portcullis targets create api --address 127.0.0.1:8443 --zone LOCAL --service echo \\
      --max-duration 1h --connection-limit 4

In a deployment:
  portcullis targets create web-01 --address 10.0.0.5:22 --zone DMZ --service ssh
  portcullis targets create pve --address pve.lan:8006 --vmid 101 --max-duration 1h --connection-limit 4
  # The API of a [[catalog.proxmox]] cluster with a sessions table: each session gets a
  # Proxmox API token of its own, injected by the worker (docs/proxmox.md).
  portcullis targets create pve-api --address pve1.lan:8006 --service proxmox-api --proxmox-cluster homelab

The zone and service must be ones the policy knows (`portcullis policy check`).")]
    Create {
        /// A unique name, used wherever an id is accepted.
        name: String,
        #[command(flatten)]
        fields: TargetFields,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a target (needs `targets:admin`); only the options given change.
    #[command(after_help = "\
Examples:
  portcullis targets create staging --address 127.0.0.1:8081 --service echo
  portcullis targets update staging --max-duration 2h
  portcullis targets update staging --tag linux --tag prod
  portcullis targets update staging --clear-tags --name staging-old

In a deployment:
  portcullis targets update web-01 --clear-zone --tag linux --tag prod
  portcullis targets update pve-api --proxmox-cluster homelab
  portcullis targets update pve-api --clear-proxmox-cluster   # a plain tunnel again")]
    Update {
        /// The target's id or name.
        id_or_name: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        fields: TargetFields,
        /// Remove the zone.
        #[arg(long, conflicts_with = "zone")]
        clear_zone: bool,
        /// Remove the service.
        #[arg(long, conflicts_with = "service")]
        clear_service: bool,
        /// Remove the Proxmox VM id.
        #[arg(long, conflicts_with = "vmid")]
        clear_vmid: bool,
        /// Remove the pool.
        #[arg(long, conflicts_with = "pool")]
        clear_pool: bool,
        /// Remove every tag.
        #[arg(long, conflicts_with = "tags")]
        clear_tags: bool,
        /// Make it a plain tunnel again: sessions no longer get a Proxmox API token.
        #[arg(long, conflicts_with = "proxmox_cluster")]
        clear_proxmox_cluster: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a target (needs `targets:admin`).
    #[command(after_help = "\
Examples:
  portcullis targets create scratch --address 127.0.0.1:8082 --service echo
  portcullis targets delete scratch

Live sessions to the target are not ended by the delete: `portcullis sessions cancel` them.")]
    Delete {
        /// The target's id or name.
        id_or_name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `targets list`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct TargetListArgs {
    /// Only the targets from this source: `manual` (hand-made), `proxmox` (discovered from
    /// any cluster) or a cluster's name.
    #[arg(long, value_name = "manual|proxmox|CLUSTER")]
    pub source: Option<String>,
    #[command(flatten)]
    pub list: ListArgs,
}

/// The query string of `targets list --source`.
fn source_query(source: Option<&str>) -> anyhow::Result<String> {
    match source {
        None => Ok(String::new()),
        Some(source) => Ok(format!("?source={}", segment(source)?)),
    }
}

/// The settable fields shared by `create` and `update`.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct TargetFields {
    /// HOST:PORT the worker dials; a host name is resolved when a session is authorised.
    #[arg(long, value_name = "HOST:PORT")]
    pub address: Option<String>,
    /// The zone of the zone firewall matrix the target sits in.
    #[arg(long)]
    pub zone: Option<String>,
    /// The service the target offers, e.g. ssh, rdp, https.
    #[arg(long)]
    pub service: Option<String>,
    /// The Proxmox VM id.
    #[arg(long)]
    pub vmid: Option<u32>,
    /// A tag; repeat for several.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// The Proxmox pool.
    #[arg(long)]
    pub pool: Option<String>,
    /// Longest session, e.g. 8h or 90m.
    #[arg(long, value_name = "DURATION", value_parser = output::parse_duration_secs)]
    pub max_duration: Option<u64>,
    /// Connections allowed per session; 0 means unlimited.
    #[arg(long, value_name = "N")]
    pub connection_limit: Option<u32>,
    /// A pinned SSH host key (`ssh-ed25519 AAAA...`, e.g. from `ssh-keyscan`); repeat for
    /// several. `connect ssh` refuses hosts whose key is not pinned.
    #[arg(long = "ssh-host-key", value_name = "KEY")]
    pub ssh_host_keys: Vec<String>,
    /// An SSH host CA (`ssh-ed25519 AAAA...`) whose host certificates `connect ssh` trusts
    /// instead of a pinned key; repeat for several.
    #[arg(long = "ssh-host-ca", value_name = "KEY")]
    pub ssh_host_cas: Vec<String>,
    /// Set a zone or service the policy does not know anyway (a warning instead of a
    /// refusal), when the controller's policy comes from a file a reload can extend.
    #[arg(long)]
    pub force: bool,
    /// The Vault SSH role that signs this target's certificates (ssh.backend = "vault").
    #[arg(long, value_name = "ROLE")]
    pub vault_ssh_role: Option<String>,
    /// The Vault SSH secrets mount for this target, if not the configured one.
    #[arg(long, value_name = "MOUNT")]
    pub vault_ssh_mount: Option<String>,
    /// A Vault path read with the session's token and returned with the session, e.g.
    /// database/creds/readonly; repeat for several.
    #[arg(long = "vault-secret", value_name = "PATH")]
    pub vault_secrets: Vec<String>,
    /// The `[[catalog.proxmox]]` cluster whose API this target is: sessions to it get a
    /// Proxmox API token minted for them and injected by the worker (the cluster needs a
    /// `sessions` table). Without it the target is a plain tunnel (e.g. the web UI).
    #[arg(long, value_name = "CLUSTER")]
    pub proxmox_cluster: Option<String>,
}

pub(crate) async fn run(cmd: TargetsCommand) -> anyhow::Result<i32> {
    match cmd {
        TargetsCommand::List(args) => {
            let query = source_query(args.source.as_deref())?;
            TARGETS.list_where(&args.list, &query, print_table).await?;
        }
        TargetsCommand::Show(args) => TARGETS.show(&args, print_target).await?,
        TargetsCommand::Create {
            name,
            fields,
            json,
            client,
        } => {
            let body = create_body(name, fields)?;
            let api = ApiClient::from_args(&client)?;
            let target: Target = api
                .post("/v1/targets", &body)
                .await
                .with_context(|| format!("cannot create target {}", body.name))?;
            print_target(&target, json)?;
        }
        TargetsCommand::Update {
            id_or_name,
            name,
            fields,
            clear_zone,
            clear_service,
            clear_vmid,
            clear_pool,
            clear_tags,
            clear_proxmox_cluster,
            json,
            client,
        } => {
            let clear = Clears {
                zone: clear_zone,
                service: clear_service,
                vmid: clear_vmid,
                pool: clear_pool,
                tags: clear_tags,
                proxmox_cluster: clear_proxmox_cluster,
            };
            let body = update_body(name, fields, clear)?;
            let api = ApiClient::from_args(&client)?;
            let target: Target = api
                .patch(&TARGETS.path(&id_or_name)?, &body)
                .await
                .with_context(|| format!("cannot update target {id_or_name}"))?;
            print_target(&target, json)?;
        }
        TargetsCommand::Delete { id_or_name, client } => {
            TARGETS.delete(&client, &id_or_name).await?;
            output::write_stdout(&format!("Deleted target {id_or_name}.\n"))?;
        }
    }
    Ok(0)
}

const TARGETS: Resource = Resource {
    singular: "target",
    plural: "targets",
};

fn create_body(name: String, fields: TargetFields) -> anyhow::Result<CreateTarget> {
    let Some(address) = fields.address else {
        bail!("a target needs --address HOST:PORT");
    };
    Ok(CreateTarget {
        name,
        address,
        zone: fields.zone,
        service: fields.service,
        vmid: fields.vmid,
        tags: fields.tags,
        pool: fields.pool,
        max_session_secs: fields.max_duration,
        connection_limit: fields.connection_limit,
        ssh_host_keys: fields.ssh_host_keys,
        ssh_host_cas: fields.ssh_host_cas,
        vault_ssh_mount: fields.vault_ssh_mount,
        vault_ssh_role: fields.vault_ssh_role,
        vault_secrets: fields.vault_secrets,
        proxmox_cluster: fields.proxmox_cluster,
        force: fields.force,
    })
}

/// Which optional fields `update` sets to null.
#[derive(Debug, Clone, Copy, Default)]
struct Clears {
    zone: bool,
    service: bool,
    vmid: bool,
    pool: bool,
    tags: bool,
    proxmox_cluster: bool,
}

/// The PATCH body: only the fields that change, `null` for the ones cleared.
///
/// Built by hand because serialising [`UpdateTarget`] writes `null` for every absent
/// double-option field, which the controller would read as "clear it".
fn update_body(
    name: Option<String>,
    fields: TargetFields,
    clear: Clears,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    use serde_json::{json, Value};
    fn put<T: serde::Serialize>(
        body: &mut serde_json::Map<String, Value>,
        key: &str,
        value: Option<T>,
        clear: bool,
    ) {
        if clear {
            body.insert(key.to_owned(), Value::Null);
        } else if let Some(value) = value {
            body.insert(key.to_owned(), json!(value));
        }
    }
    let tags = (!fields.tags.is_empty()).then_some(fields.tags);
    let mut body = serde_json::Map::new();
    put(&mut body, "name", name, false);
    put(&mut body, "address", fields.address, false);
    put(&mut body, "zone", fields.zone, clear.zone);
    put(&mut body, "service", fields.service, clear.service);
    put(&mut body, "vmid", fields.vmid, clear.vmid);
    if clear.tags {
        body.insert("tags".into(), json!([]));
    } else {
        put(&mut body, "tags", tags, false);
    }
    put(&mut body, "pool", fields.pool, clear.pool);
    put(&mut body, "max_session_secs", fields.max_duration, false);
    put(
        &mut body,
        "connection_limit",
        fields.connection_limit,
        false,
    );
    let host_keys = (!fields.ssh_host_keys.is_empty()).then_some(fields.ssh_host_keys);
    put(&mut body, "ssh_host_keys", host_keys, false);
    let host_cas = (!fields.ssh_host_cas.is_empty()).then_some(fields.ssh_host_cas);
    put(&mut body, "ssh_host_cas", host_cas, false);
    put(&mut body, "vault_ssh_mount", fields.vault_ssh_mount, false);
    put(&mut body, "vault_ssh_role", fields.vault_ssh_role, false);
    let secrets = (!fields.vault_secrets.is_empty()).then_some(fields.vault_secrets);
    put(&mut body, "vault_secrets", secrets, false);
    put(
        &mut body,
        "proxmox_cluster",
        fields.proxmox_cluster,
        clear.proxmox_cluster,
    );
    if body.is_empty() {
        bail!(
            "nothing to change: pass at least one option (see `portcullis targets update --help`)"
        );
    }
    if fields.force {
        body.insert("force".into(), json!(true));
    }
    // The body must be what the controller parses; catch a drift from the wire type here.
    serde_json::from_value::<UpdateTarget>(Value::Object(body.clone()))
        .context("the update does not match the API's UpdateTarget body")?;
    Ok(body)
}

fn print_table(targets: &[Target]) -> anyhow::Result<()> {
    Table::of(
        targets,
        &[
            ("ID", |t| t.id.clone()),
            ("NAME", |t| t.name.clone()),
            ("ADDRESS", |t| t.address.clone()),
            ("ZONE", |t| output::or_dash(t.zone.as_deref())),
            ("SERVICE", |t| output::or_dash(t.service.as_deref())),
            ("MAX DURATION", |t| output::duration(t.max_session_secs)),
            ("CONN LIMIT", |t| output::limit(t.connection_limit)),
            ("TAGS", |t| output::or_dash(Some(&t.tags.join(",")))),
            ("PROXMOX API", |t| {
                output::or_dash(t.proxmox_cluster.as_deref())
            }),
            ("SOURCE", source),
        ],
    )
    .print_or("No targets.")
}

/// `manual`, or `CLUSTER:KEY` for a discovered target, marked when it cannot be reached.
fn source(target: &Target) -> String {
    let origin = match &target.source {
        None => "manual".to_owned(),
        Some(source) => format!("{}:{}", source.cluster, source.key),
    };
    if target.available {
        origin
    } else {
        format!("{origin} (unavailable)")
    }
}

/// Whether sessions get a Proxmox API token of their own: the cluster that mints it.
fn proxmox_api(target: &Target) -> String {
    match &target.proxmox_cluster {
        Some(cluster) => format!("token per session (cluster {cluster})"),
        None => "-".into(),
    }
}

fn print_target(target: &Target, json: bool) -> anyhow::Result<()> {
    for warning in &target.warnings {
        eprintln!("warning: {}", portcullis_proto::text::escaped(warning));
    }
    if json {
        return output::print_json(target);
    }
    output::print_fields(&[
        ("ID", target.id.clone()),
        ("Name", target.name.clone()),
        ("Address", target.address.clone()),
        ("Zone", output::or_dash(target.zone.as_deref())),
        ("Service", output::or_dash(target.service.as_deref())),
        (
            "VM id",
            target.vmid.map_or_else(|| "-".into(), |v| v.to_string()),
        ),
        ("Pool", output::or_dash(target.pool.as_deref())),
        ("Tags", output::or_dash(Some(&target.tags.join(", ")))),
        ("Source", source(target)),
        ("Available", super::catalog::available(target)),
        ("Max duration", output::duration(target.max_session_secs)),
        ("Connection limit", output::limit(target.connection_limit)),
        ("SSH host keys", target.ssh_host_keys.len().to_string()),
        ("SSH host CAs", target.ssh_host_cas.len().to_string()),
        (
            "Vault SSH role",
            match (&target.vault_ssh_mount, &target.vault_ssh_role) {
                (Some(mount), Some(role)) => format!("{mount}/sign/{role}"),
                (None, Some(role)) => role.clone(),
                (Some(mount), None) => format!("{mount} (default role)"),
                (None, None) => "-".into(),
            },
        ),
        (
            "Vault secrets",
            output::or_dash(Some(&target.vault_secrets.join(", "))),
        ),
        ("Proxmox API", proxmox_api(target)),
        ("Created", output::time(target.created_at)),
        ("Updated", output::time(target.updated_at)),
    ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: TargetsCommand,
    }

    fn parse(args: &[&str]) -> Result<TargetsCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("targets").chain(args.iter().copied())).map(|c| c.cmd)
    }

    #[test]
    fn create_builds_the_body() {
        let cmd = parse(&[
            "create",
            "web",
            "--address",
            "10.0.0.5:22",
            "--zone",
            "dmz",
            "--tag",
            "a",
            "--tag",
            "b",
            "--max-duration",
            "8h",
            "--connection-limit",
            "3",
        ])
        .unwrap();
        let TargetsCommand::Create { name, fields, .. } = cmd else {
            panic!("not create");
        };
        let body = create_body(name, fields).unwrap();
        assert_eq!(body.max_session_secs, Some(28_800));
        assert_eq!(body.tags, ["a", "b"]);
        assert_eq!(body.connection_limit, Some(3));
        assert!(create_body("x".into(), TargetFields::default()).is_err());
    }

    #[test]
    fn ssh_and_vault_flags_reach_the_body() {
        let cmd = parse(&[
            "update",
            "web",
            "--ssh-host-ca",
            "ssh-ed25519 AAAA",
            "--vault-ssh-role",
            "web",
            "--vault-secret",
            "database/creds/readonly",
        ])
        .unwrap();
        let TargetsCommand::Update {
            id_or_name, fields, ..
        } = cmd
        else {
            panic!("not update");
        };
        assert_eq!(id_or_name, "web");
        let body = update_body(None, fields, Clears::default()).unwrap();
        let json = serde_json::Value::Object(body);
        assert_eq!(
            json,
            serde_json::json!({
                "ssh_host_cas": ["ssh-ed25519 AAAA"],
                "vault_ssh_role": "web",
                "vault_secrets": ["database/creds/readonly"],
            })
        );
    }

    #[test]
    fn proxmox_cluster_is_set_and_cleared() {
        let TargetsCommand::Create { name, fields, .. } = parse(&[
            "create",
            "pve-api",
            "--address",
            "pve1.lan:8006",
            "--proxmox-cluster",
            "homelab",
        ])
        .unwrap() else {
            panic!("not create");
        };
        let body = create_body(name, fields).unwrap();
        assert_eq!(body.proxmox_cluster.as_deref(), Some("homelab"));

        let update = |args: &[&str]| {
            let TargetsCommand::Update {
                fields,
                clear_proxmox_cluster,
                ..
            } = parse(args).unwrap()
            else {
                panic!("not update");
            };
            let clear = Clears {
                proxmox_cluster: clear_proxmox_cluster,
                ..Clears::default()
            };
            serde_json::Value::Object(update_body(None, fields, clear).unwrap())
        };
        let set = update(&["update", "pve-api", "--proxmox-cluster", "homelab"]);
        assert_eq!(set, serde_json::json!({"proxmox_cluster": "homelab"}));
        let cleared = update(&["update", "pve-api", "--clear-proxmox-cluster"]);
        assert_eq!(cleared, serde_json::json!({"proxmox_cluster": null}));
        let back: UpdateTarget = serde_json::from_value(cleared).unwrap();
        assert_eq!(back.proxmox_cluster, Some(None));
        assert!(parse(&[
            "update",
            "pve-api",
            "--proxmox-cluster",
            "a",
            "--clear-proxmox-cluster"
        ])
        .is_err());
    }

    #[test]
    fn list_filters_by_source() {
        let TargetsCommand::List(args) = parse(&["list", "--source", "homelab", "--json"]).unwrap()
        else {
            panic!("not list");
        };
        assert!(args.list.json);
        assert_eq!(
            source_query(args.source.as_deref()).unwrap(),
            "?source=homelab"
        );
        assert_eq!(source_query(None).unwrap(), "");
        // A value cannot add parameters of its own.
        assert_eq!(
            source_query(Some("a&zone=X")).unwrap(),
            "?source=a%26zone%3DX"
        );
    }

    #[test]
    fn the_source_column_tells_hand_made_from_discovered() {
        let mut target: Target = serde_json::from_value(serde_json::json!({
            "id": "t_1", "name": "web", "address": "10.0.0.5:22", "zone": null,
            "service": null, "vmid": null, "tags": [], "pool": null,
            "max_session_secs": 3600, "connection_limit": 0,
            "created_at": 0, "updated_at": 0
        }))
        .unwrap();
        assert!(
            target.available,
            "an older controller's target is available"
        );
        assert_eq!(source(&target), "manual");
        target.source = Some(portcullis_proto::catalog::TargetSource {
            kind: "proxmox".into(),
            cluster: "homelab".into(),
            key: "qemu/100".into(),
            node: None,
            guest_type: "qemu".into(),
            status: "stopped".into(),
            address_origin: None,
            overrides: Vec::new(),
            seen_at: 0,
        });
        assert_eq!(source(&target), "homelab:qemu/100");
        target.available = false;
        assert_eq!(source(&target), "homelab:qemu/100 (unavailable)");
        assert_eq!(super::super::catalog::available(&target), "no (stopped)");
    }

    #[test]
    fn update_sends_only_what_changes() {
        let body = update_body(
            None,
            TargetFields {
                max_duration: Some(60),
                ..TargetFields::default()
            },
            Clears {
                zone: true,
                ..Clears::default()
            },
        )
        .unwrap();
        let json = serde_json::Value::Object(body);
        assert_eq!(
            json,
            serde_json::json!({"zone": null, "max_session_secs": 60})
        );
        // The controller tells absent from null apart: zone cleared, service untouched.
        let back: UpdateTarget = serde_json::from_value(json).unwrap();
        assert_eq!(back.zone, Some(None));
        assert_eq!(back.service, None);
        assert!(update_body(None, TargetFields::default(), Clears::default()).is_err());
        assert!(parse(&["update", "web", "--zone", "a", "--clear-zone"]).is_err());
    }
}
