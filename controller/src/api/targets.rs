//! `/v1/targets`: create, list, show, update and delete targets.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use portcullis_policy::Permission;
use portcullis_proto::api::{CreateTarget, List, Target, UpdateTarget};

use super::error::ApiError;
use super::extract::{ApiJson, Principal};
use crate::admin::{target_created, target_updated};
use crate::audit::{event, AuditEvent, Event};
use crate::clock;
use crate::ids::{new_id, IdKind};
use crate::state::AppState;
use crate::store::targets::{self as rows, SourceFilter, TargetRecord};
use crate::target_labels::{self, LabelCheck};

const MAX_SESSION_SECS: u64 = 30 * 24 * 3600;

pub(crate) fn to_api(t: &TargetRecord) -> Target {
    Target {
        id: t.id.clone(),
        name: t.name.clone(),
        address: t.address.clone(),
        zone: t.zone.clone(),
        service: t.service.clone(),
        vmid: t.vmid,
        tags: t.tags.clone(),
        pool: t.pool.clone(),
        max_session_secs: clock::to_u64(t.max_session_secs),
        connection_limit: u32::try_from(t.connection_limit).unwrap_or(0),
        ssh_host_keys: t.ssh_host_keys.clone(),
        ssh_host_cas: t.ssh_host_cas.clone(),
        vault_ssh_mount: t.vault_ssh_mount.clone(),
        vault_ssh_role: t.vault_ssh_role.clone(),
        vault_secrets: t.vault_secrets.clone(),
        proxmox_cluster: t.proxmox_cluster.clone(),
        created_at: clock::to_u64(t.created_at),
        updated_at: clock::to_u64(t.updated_at),
        warnings: vec![],
        source: crate::catalog::target_source(t),
        available: t.available,
    }
}

/// The zone and service being set, checked against the policy (see [`target_labels`]):
/// the warnings of what `force` let through, or a 422 naming the field.
fn check_labels(
    state: &AppState,
    zone: Option<&str>,
    service: Option<&str>,
    force: bool,
) -> Result<Vec<String>, ApiError> {
    let how = LabelCheck {
        force,
        reloadable: state.config.policy_file.is_some(),
    };
    target_labels::check(state.policy().as_deref(), zone, service, how).map_err(|err| {
        let mut api = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_in_policy",
            err.to_string(),
        );
        api.field = Some(err.kind.to_owned());
        api
    })
}

/// A target's `proxmox_cluster` must name a configured `[[catalog.proxmox]]` with a
/// `[catalog.proxmox.sessions]` table: that table says how its sessions' tokens are minted.
fn check_proxmox_cluster(state: &AppState, cluster: Option<&str>) -> Result<(), ApiError> {
    let Some(name) = cluster else {
        return Ok(());
    };
    let message = match state.config.catalog.iter().find(|c| c.name == name) {
        Some(c) if c.sessions.is_some() => return Ok(()),
        Some(_) => format!(
            "the Proxmox cluster {name:?} has no [catalog.proxmox.sessions] table, so no token \
             can be minted for its sessions; add one (docs/proxmox.md) or leave \
             proxmox_cluster unset for a plain tunnel"
        ),
        None => {
            let known: Vec<&str> = state
                .config
                .catalog
                .iter()
                .filter(|c| c.sessions.is_some())
                .map(|c| c.name.as_str())
                .collect();
            format!(
                "{name:?} is no configured [[catalog.proxmox]] cluster with a sessions table; \
                 configured: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        }
    };
    let mut api = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no_such_cluster", message);
    api.field = Some("proxmox_cluster".to_owned());
    Err(api)
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !crate::ids::looks_like(IdKind::Target, name);
    if ok {
        Ok(())
    } else {
        Err(ApiError::field(
            "name",
            "a target name is 1-64 letters, digits, `-`, `_` or `.`, e.g. web-01",
        ))
    }
}

/// Checks `HOST:PORT` (a name, an IPv4 address, or `[IPv6]`).
pub(crate) fn check_address(address: &str) -> Result<(), ApiError> {
    let bad = || {
        ApiError::field(
            "address",
            format!("{address:?} is not HOST:PORT (e.g. 10.20.0.5:22 or web-01.lan:22)"),
        )
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
    };
    if port == 0 || !host_ok {
        return Err(bad());
    }
    Ok(())
}

fn check_optional_label(field: &str, value: &Option<String>) -> Result<(), ApiError> {
    match value {
        Some(v) if v.is_empty() || v.len() > 64 => Err(ApiError::field(
            field,
            format!("`{field}` must be 1-64 characters"),
        )),
        Some(v) => check_printable(field, v),
        None => Ok(()),
    }
}

/// Labels are shown in tables and logs: a control character (newline, ESC...) or a
/// bidirectional override in one would rewrite the reader's terminal or reorder what it shows.
fn check_printable(field: &str, value: &str) -> Result<(), ApiError> {
    match portcullis_proto::text::first_unsafe(value) {
        None => Ok(()),
        Some(c) => Err(ApiError::field(
            field,
            format!(
                "`{field}` contains the character U+{:04X}; labels may not contain control \
                 characters or bidirectional or invisible formatting characters",
                u32::from(c)
            ),
        )),
    }
}

fn check_max(secs: u64) -> Result<i64, ApiError> {
    if secs == 0 || secs > MAX_SESSION_SECS {
        return Err(ApiError::field(
            "max_session_secs",
            "must be between 1 second and 30 days",
        ));
    }
    Ok(clock::to_i64(secs))
}

fn check_record(t: &TargetRecord) -> Result<(), ApiError> {
    check_name(&t.name)?;
    check_address(&t.address)?;
    check_optional_label("zone", &t.zone)?;
    check_optional_label("service", &t.service)?;
    check_optional_label("pool", &t.pool)?;
    if t.ssh_host_keys.len() > 16
        || t.ssh_host_keys
            .iter()
            .any(|k| ssh_key::PublicKey::from_openssh(k).is_err())
    {
        return Err(ApiError::field(
            "ssh_host_keys",
            "each entry must be an OpenSSH public key line such as `ssh-ed25519 AAAA...` (at most 16)",
        ));
    }
    if t.ssh_host_cas.len() > 16
        || t.ssh_host_cas
            .iter()
            .any(|k| ssh_key::PublicKey::from_openssh(k).is_err())
    {
        return Err(ApiError::field(
            "ssh_host_cas",
            "each entry must be an OpenSSH public key line of a host CA, such as `ssh-ed25519 AAAA...` (at most 16)",
        ));
    }
    for (field, value) in [
        ("vault_ssh_mount", &t.vault_ssh_mount),
        ("vault_ssh_role", &t.vault_ssh_role),
    ] {
        if let Some(v) = value {
            if !crate::vault::valid_path(v) {
                return Err(ApiError::field(
                    field,
                    format!("{v:?} is not a Vault mount or role name (letters, digits, -, _, ., / inside)"),
                ));
            }
        }
    }
    if t.vault_secrets.len() > 8 || t.vault_secrets.iter().any(|p| !crate::vault::valid_path(p)) {
        return Err(ApiError::field(
            "vault_secrets",
            "at most 8 Vault paths such as `database/creds/readonly`",
        ));
    }
    if t.tags.len() > 32 || t.tags.iter().any(|tag| tag.is_empty() || tag.len() > 64) {
        return Err(ApiError::field(
            "tags",
            "at most 32 tags of 1-64 characters",
        ));
    }
    for tag in &t.tags {
        check_printable("tags", tag)?;
    }
    Ok(())
}

pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateTarget>,
) -> Result<(StatusCode, Json<Target>), ApiError> {
    principal.require(Permission::TargetsAdmin)?;
    let now = clock::to_i64(state.clock.unix_secs());
    let record = TargetRecord {
        id: new_id(IdKind::Target),
        name: body.name,
        address: body.address,
        zone: body.zone,
        service: body.service,
        vmid: body.vmid,
        tags: body.tags,
        pool: body.pool,
        max_session_secs: check_max(
            body.max_session_secs
                .unwrap_or(state.config.session_default_max.as_secs()),
        )?,
        connection_limit: i64::from(body.connection_limit.unwrap_or(0)),
        ssh_host_keys: body.ssh_host_keys,
        ssh_host_cas: body.ssh_host_cas,
        vault_ssh_mount: body.vault_ssh_mount,
        vault_ssh_role: body.vault_ssh_role,
        vault_secrets: body.vault_secrets,
        source: None,
        source_key: None,
        available: true,
        discovered: None,
        proxmox_cluster: body.proxmox_cluster,
        created_at: now,
        updated_at: now,
    };
    check_record(&record)?;
    check_proxmox_cluster(&state, record.proxmox_cluster.as_deref())?;
    let warnings = check_labels(
        &state,
        record.zone.as_deref(),
        record.service.as_deref(),
        body.force,
    )?;
    let mut tx = state.begin_audited().await?;
    rows::insert(tx.write(), &record)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("a target named {:?} already exists", record.name),
            ),
            other => other.into(),
        })?;
    tx.commit(AuditEvent::new(principal.actor(), target_created(&record)).target(&record.id))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Target {
            warnings,
            ..to_api(&record)
        }),
    ))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// `manual` (made by hand), `proxmox` (discovered from any cluster) or the name of a
    /// configured `[[catalog.proxmox]]`.
    source: Option<String>,
}

/// `GET /v1/targets[?source=manual|proxmox|CLUSTER]`.
pub(crate) async fn list(
    State(state): State<AppState>,
    _principal: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Json<List<Target>>, ApiError> {
    let filter = q
        .source
        .as_deref()
        .map(|source| source_filter(&state, source))
        .transpose()?;
    let mut conn = state.store.conn().await?;
    let found = match filter {
        Some(filter) => rows::list_by_source(&mut conn, filter).await?,
        None => rows::list(&mut conn).await?,
    };
    let items = found.iter().map(to_api).collect();
    Ok(Json(List { items, next: None }))
}

/// `?source=`: the two words, or a configured cluster's name.
fn source_filter<'s>(state: &AppState, source: &'s str) -> Result<SourceFilter<'s>, ApiError> {
    match source {
        "manual" => Ok(SourceFilter::Manual),
        "proxmox" => Ok(SourceFilter::Discovered),
        name if state.config.catalog.iter().any(|c| c.name == name) => {
            Ok(SourceFilter::Cluster(name))
        }
        other => {
            let mut accepted = vec!["manual".to_owned(), "proxmox".to_owned()];
            accepted.extend(state.config.catalog.iter().map(|c| c.name.clone()));
            Err(ApiError::field(
                "source",
                format!(
                    "{other:?} is no target source; use one of: {}",
                    accepted.join(", ")
                ),
            ))
        }
    }
}

pub(crate) async fn get(
    State(state): State<AppState>,
    _principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Target>, ApiError> {
    let mut conn = state.store.conn().await?;
    let target = rows::find(&mut conn, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("target", &id))?;
    Ok(Json(to_api(&target)))
}

pub(crate) async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateTarget>,
) -> Result<Json<Target>, ApiError> {
    update_as(&state, &principal, &id, body).await.map(Json)
}

/// Changes target `id` (its id or name) as `principal` asks, audited as `target_updated`:
/// the API's PATCH and the console's edit form.
pub(crate) async fn update_as(
    state: &AppState,
    principal: &Principal,
    id: &str,
    body: UpdateTarget,
) -> Result<Target, ApiError> {
    principal.require(Permission::TargetsAdmin)?;
    let mut tx = state.begin_audited().await?;
    let mut t = rows::find(tx.read(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("target", id))?;
    if let Some(v) = body.name {
        t.name = v;
    }
    if let Some(v) = body.address {
        t.address = v;
    }
    // Only a zone or service set here is checked: a target whose label the policy lost
    // in a reload can still be changed otherwise.
    let new_zone = body.zone.clone().flatten();
    let new_service = body.service.clone().flatten();
    if let Some(v) = body.zone {
        t.zone = v;
    }
    if let Some(v) = body.service {
        t.service = v;
    }
    if let Some(v) = body.vmid {
        t.vmid = v;
    }
    if let Some(v) = body.tags {
        t.tags = v;
    }
    if let Some(v) = body.pool {
        t.pool = v;
    }
    if let Some(v) = body.max_session_secs {
        t.max_session_secs = check_max(v)?;
    }
    if let Some(v) = body.connection_limit {
        t.connection_limit = i64::from(v);
    }
    if let Some(v) = body.ssh_host_keys {
        t.ssh_host_keys = v;
    }
    if let Some(v) = body.ssh_host_cas {
        t.ssh_host_cas = v;
    }
    if let Some(v) = body.vault_ssh_mount {
        t.vault_ssh_mount = v;
    }
    if let Some(v) = body.vault_ssh_role {
        t.vault_ssh_role = v;
    }
    if let Some(v) = body.vault_secrets {
        t.vault_secrets = v;
    }
    // Only a cluster set here is checked, as the labels are.
    if let Some(v) = body.proxmox_cluster {
        check_proxmox_cluster(state, v.as_deref())?;
        t.proxmox_cluster = v;
    }
    t.updated_at = clock::to_i64(state.clock.unix_secs());
    check_record(&t)?;
    let warnings = check_labels(
        state,
        new_zone.as_deref(),
        new_service.as_deref(),
        body.force,
    )?;
    rows::update(tx.write(), &t).await?;
    tx.commit(AuditEvent::new(principal.actor(), target_updated(&t)).target(&t.id))
        .await?;
    Ok(Target {
        warnings,
        ..to_api(&t)
    })
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Permission::TargetsAdmin)?;
    let mut tx = state.begin_audited().await?;
    let t = rows::find(tx.read(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("target", &id))?;
    refuse_discovered(&state, &t)?;
    rows::delete(tx.write(), &t.id).await?;
    let event = Event::TargetDeleted {
        details: event::TargetName {
            name: t.name.clone(),
        },
    };
    tx.commit(AuditEvent::new(principal.actor(), event).target(&t.id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A target a configured cluster's sync owns is not deleted by hand: the next sync would
/// bring it back. One of a cluster no longer configured may go.
fn refuse_discovered(state: &AppState, t: &TargetRecord) -> Result<(), ApiError> {
    let Some(cluster) = t.source.as_deref() else {
        return Ok(());
    };
    if !state.config.catalog.iter().any(|c| c.name == cluster) {
        return Ok(());
    }
    let key = t.source_key.as_deref().unwrap_or("?");
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "discovered",
        format!(
            "target {} was discovered in the Proxmox cluster {cluster} ({key}): the next catalog \
             sync would bring it back; remove the guest in Proxmox (or stop it to make it \
             unconnectable), or remove the cluster from [[catalog.proxmox]]",
            t.name
        ),
    ))
}
