//! What the controller does with each request a worker sends on the link.

use portcullis_proto::link::{
    AdmitFirst, ConnectionEvent, ConnectionEventKind, EndReason, Hello, Request, Response,
    SessionEnd, Sync, Trouble, WorkerPhase,
};
use portcullis_proto::text;

use crate::audit::{event, Actor, AuditEvent, AuditedTx, Event};
use crate::clock;
use crate::keys::ca::Leaf;
use crate::state::AppState;
use crate::store::connections::{self as connection_rows, FirstAdmission};
use crate::store::sessions::{self as session_rows, SessionState};
use crate::store::{workers as worker_rows, StoreError};

fn error(message: impl Into<String>) -> Response {
    Response::error(message)
}

/// The answer to a request the store failed; an unreachable store is named as the trouble,
/// which the worker words its refusals with.
pub(crate) fn store_error(state: &AppState, err: StoreError) -> Response {
    tracing::warn!(error = %text::escaped(&err), "link request failed in the store");
    state.store_watch.failed(&err);
    match err {
        StoreError::Unavailable(_) => Response::Error {
            message: "the controller cannot reach its database; retry".into(),
            trouble: Some(Trouble::StoreUnreachable),
        },
        _ => error("the controller's store failed this request; retry"),
    }
}

/// Dispatches a request from a linked worker.
pub(crate) async fn handle(
    state: &AppState,
    worker_id: &str,
    proxy_addr: &str,
    request: Request,
) -> Response {
    match request {
        Request::Heartbeat {
            live_sessions,
            phase,
        } => {
            let answer = sync(state, worker_id, proxy_addr, &live_sessions, phase).await;
            if phase == WorkerPhase::Stopped && matches!(answer, Response::Sync(_)) {
                stopped(state, worker_id);
            }
            answer
        }
        Request::AdmitFirst(admit) => admit_first(state, worker_id, admit).await,
        Request::Events { events } => apply_events(state, worker_id, events).await,
        Request::RenewCertificate => renew(state, worker_id).await,
        Request::Hello(_) => error("already linked: hello is only the first request"),
        Request::Join(_) => error("a linked worker cannot join again"),
        Request::EndSession(_) | Request::Ping => error("workers cannot send this request"),
        Request::GatewayHostCertificate { public_key } => {
            crate::gateway::host_cert::issue(state, worker_id, &public_key).await
        }
        Request::GatewayCredential(request) => {
            crate::gateway::credential::issue(state, worker_id, request).await
        }
        Request::VetForward(request) => {
            crate::gateway::forward::vet(state, worker_id, request).await
        }
        Request::RecordingChunks { chunks } => {
            crate::recordings::ingest::store_chunks(state, worker_id, chunks).await
        }
        Request::PveCredential(request) => {
            crate::sessions::pve::credential::issue(state, worker_id, request).await
        }
    }
}

/// Checks a worker's hello: it must be an active worker presenting its own key.
pub(crate) async fn hello(state: &AppState, spki: &[u8], hello: &Hello) -> Response {
    if hello.protocol_version != portcullis_proto::PROTOCOL_VERSION {
        return error(format!(
            "protocol version {} is not supported (this controller speaks {})",
            hello.protocol_version,
            portcullis_proto::PROTOCOL_VERSION
        ));
    }
    let worker = {
        let mut conn = match state.store.conn().await {
            Ok(c) => c,
            Err(e) => return store_error(state, e),
        };
        match worker_rows::find(&mut conn, &hello.worker_id).await {
            Ok(w) => w,
            Err(e) => return store_error(state, e),
        }
    };
    let fingerprint = portcullis_proto::keys::spki_fingerprint(spki);
    match worker {
        Some(w)
            if w.id == hello.worker_id
                && w.key_fingerprint == fingerprint
                && w.state == worker_rows::ACTIVE =>
        {
            let answer = sync(
                state,
                &w.id,
                &hello.proxy_addr,
                &hello.live_sessions,
                hello.phase,
            )
            .await;
            if matches!(answer, Response::Sync(_)) {
                // A worker that restarted holds none of the sessions its old connections
                // belonged to: close those rows now, with the last counts known.
                if let Err(err) =
                    crate::sessions::lost::close_left_open(state, &w.id, &hello.live_sessions).await
                {
                    tracing::warn!(error = %text::escaped(&err), "could not close the connections the worker left open; the next hello or the sweeper will");
                }
            }
            answer
        }
        Some(w) if w.state != worker_rows::ACTIVE => {
            error("this worker has been deleted; enrol it again with a new join token")
        }
        _ => error("unknown worker or a certificate that is not this worker's"),
    }
}

/// A worker that drained and is about to exit: its sessions end with reason `shutdown` (and
/// their Vault tokens are revoked) now, not as lost `lost_after` later; connections it could
/// not report closed are closed as lost. In the background: the worker does not wait.
fn stopped(state: &AppState, worker_id: &str) {
    let (state, worker_id) = (state.clone(), worker_id.to_owned());
    tokio::spawn(async move {
        let ended = async {
            crate::sessions::lost::close_left_open(&state, &worker_id, &[]).await?;
            let live = {
                let mut conn = state.store.conn().await?;
                session_rows::live_on_worker(&mut conn, &worker_id).await?
            };
            let mut ended = 0usize;
            for session in live {
                if crate::sessions::lifecycle::end_session(
                    &state,
                    &session.id,
                    EndReason::Shutdown,
                    Actor::worker(&worker_id),
                )
                .await?
                .is_some()
                {
                    ended += 1;
                }
            }
            Ok::<_, StoreError>(ended)
        }
        .await;
        match ended {
            Ok(ended) => tracing::info!(sessions = ended, "worker stopped: its sessions ended"),
            Err(err) => {
                tracing::warn!(error = %text::escaped(&err), "could not end a stopped worker's sessions; they end as lost after workers.lost_after")
            }
        }
    });
}

/// Marks the worker seen (with what it is doing) and returns the keys and the sessions among
/// `live` that ended.
async fn sync(
    state: &AppState,
    worker_id: &str,
    proxy_addr: &str,
    live: &[String],
    phase: WorkerPhase,
) -> Response {
    let now = clock::to_i64(state.clock.unix_secs());
    let result = async {
        let mut conn = state.store.conn().await?;
        worker_rows::touch(&mut conn, worker_id, now, proxy_addr, phase).await?;
        let states = session_rows::states(&mut conn, live).await?;
        Ok::<_, StoreError>(states)
    }
    .await;
    let states = match result {
        Ok(s) => {
            state.store_watch.reached(now);
            s
        }
        Err(e) => return store_error(state, e),
    };
    let mut ended: Vec<SessionEnd> = states
        .into_iter()
        .filter(|(_, state, _)| *state == SessionState::Terminated)
        .map(|(id, _, reason)| SessionEnd {
            session_id: id,
            reason: reason.unwrap_or(EndReason::Terminated),
        })
        .collect();
    // Sessions the store does not know are not allowed to continue.
    for id in live {
        if !ended.iter().any(|e| &e.session_id == id) {
            // Only a store that answers "no such session" ends it: a store that fails to
            // answer (busy, timed out) says nothing about the session, which stays.
            let known = match state.store.conn().await {
                Ok(mut c) => match session_rows::get(&mut c, id).await {
                    Ok(found) => found.is_some(),
                    Err(e) => {
                        tracing::warn!(session.id = %id, error = %text::escaped(&e), "cannot tell whether a worker's session is known; it stays until the next heartbeat");
                        true
                    }
                },
                Err(_) => true,
            };
            if !known {
                ended.push(SessionEnd {
                    session_id: id.clone(),
                    reason: EndReason::UnknownSession,
                });
            }
        }
    }
    let grant_keys = match state.keys.grant_keys().await {
        Ok(keys) => keys,
        Err(e) => return error(format!("keyset unavailable: {e}")),
    };
    let tls_ca = match state.keys.ca_bundle().await {
        Ok(bundle) => bundle.pem(),
        Err(e) => return error(format!("keyset unavailable: {e}")),
    };
    Response::Sync(Sync {
        grant_keys,
        ended,
        heartbeat_ms: u64::try_from(state.config.heartbeat_interval.as_millis()).unwrap_or(1000),
        controller_id: state.controller_id.to_string(),
        tls_ca: Some(tls_ca),
    })
}

/// Answers a worker's request to admit a session's first connection. A repeat of a request
/// already admitted (the worker asked again after its link dropped, or this controller hung
/// and reads an old copy) is answered again but neither counted nor audited again: its
/// transaction records no event and so commits nothing.
async fn admit_first(state: &AppState, worker_id: &str, admit: AdmitFirst) -> Response {
    let now = clock::to_i64(state.clock.unix_secs());
    let result = async {
        let mut tx = state.begin_audited().await?;
        let admission = connection_rows::admit_first(
            tx.write(),
            &admit.session_id,
            worker_id,
            &admit.connection_id,
            &admit.client_addr,
            now,
        )
        .await?;
        let session = session_rows::get(tx.read(), &admit.session_id).await?;
        let admitted = match admission {
            FirstAdmission::Repeated { live } => {
                tx.commit_recorded().await?;
                return Ok::<_, StoreError>((live, refusal(session.as_ref(), worker_id, now)));
            }
            FirstAdmission::Admitted => true,
            FirstAdmission::Refused | FirstAdmission::IdInUse => false,
        };
        let reason = if admission == FirstAdmission::IdInUse {
            "the connection id is another connection's; the worker must choose a new id".into()
        } else {
            refusal(session.as_ref(), worker_id, now)
        };
        let target_id = session
            .as_ref()
            .map(|s| s.target_id.clone())
            .unwrap_or_default();
        let actor = Actor::worker(worker_id);
        let event = if admitted {
            let opened = Event::ConnectionOpened {
                details: event::ConnectionOpened {
                    connection_id: admit.connection_id.clone(),
                    client_addr: admit.client_addr.clone(),
                    first: Some(true),
                    endpoint: None,
                },
            };
            AuditEvent::new(actor.clone(), opened).target(&target_id)
        } else {
            let refused = Event::ConnectionRefused {
                reason: reason.clone(),
                details: event::ConnectionRefusal::Connection(event::ConnectionRef {
                    connection_id: admit.connection_id.clone(),
                    client_addr: admit.client_addr.clone(),
                }),
            };
            AuditEvent::new(actor.clone(), refused)
        };
        tx.record(event.session(&admit.session_id));
        if admitted && session.as_ref().is_some_and(|s| s.connections_count == 1) {
            tx.record(
                AuditEvent::new(actor, Event::SessionActivated)
                    .session(&admit.session_id)
                    .target(&target_id),
            );
        }
        tx.commit_recorded().await?;
        Ok((admitted, reason))
    }
    .await;
    match result {
        Ok((true, _)) => Response::Admitted,
        Ok((false, reason)) => Response::Refused { reason },
        Err(e) => store_error(state, e),
    }
}

fn refusal(session: Option<&session_rows::SessionRecord>, worker_id: &str, now: i64) -> String {
    match session {
        None => "unknown session".into(),
        Some(s) if s.state == SessionState::Terminated => {
            format!(
                "session ended: {}",
                s.termination_reason.unwrap_or(EndReason::Terminated)
            )
        }
        Some(s) if s.worker_id != worker_id => "the session belongs to another worker".into(),
        Some(s) if s.expires_at <= now => "session expired".into(),
        Some(s) if s.connection_limit > 0 && s.connections_count >= s.connection_limit => {
            "connection limit reached".into()
        }
        Some(_) => "admitted".into(),
    }
}

/// Applies a frame of connection events in one transaction of the audit group commit (one
/// commit for the whole frame, however many events), in the order the worker sent them, and
/// acknowledges them all; on a store error nothing is acknowledged and the worker resends.
async fn apply_events(state: &AppState, worker_id: &str, events: Vec<ConnectionEvent>) -> Response {
    let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let worker = worker_id.to_owned();
    let events = std::sync::Arc::new(events);
    let applied = state
        .audit_writer
        .run(move |tx| {
            let (events, worker) = (events.clone(), worker.clone());
            Box::pin(async move {
                let mut limit_reached = Vec::new();
                for event in events.iter() {
                    if apply_event(tx, &worker, event).await? {
                        limit_reached.push(event.session_id.clone());
                    }
                }
                Ok(limit_reached)
            })
        })
        .await;
    match applied {
        Ok(limit_reached) => {
            for session_id in limit_reached {
                if let Err(err) = crate::sessions::lifecycle::end_session(
                    state,
                    &session_id,
                    EndReason::ConnectionLimit,
                    Actor::worker(worker_id),
                )
                .await
                {
                    tracing::warn!(error = %text::escaped(&err), session.id = %text::escaped(&session_id), "could not end a session at its connection limit; the sweeper will");
                }
            }
            Response::EventsAck { event_ids: ids }
        }
        Err(err) => {
            tracing::warn!(error = %text::escaped(&err), events = ids.len(), "could not apply connection events; the worker will resend them");
            Response::EventsAck { event_ids: vec![] }
        }
    }
}

/// One connection event, in the frame's transaction. True when it closed the last connection
/// a session's limit allowed (the session is then ended after the commit).
async fn apply_event(
    tx: &mut AuditedTx,
    worker_id: &str,
    event: &ConnectionEvent,
) -> Result<bool, StoreError> {
    if let ConnectionEventKind::Refused { .. } = &event.kind {
        apply_refused(tx, worker_id, event).await?;
        return Ok(false);
    }
    let Some(session) = session_rows::get(tx.read(), &event.session_id).await? else {
        // An event for a session this store never had is acknowledged and dropped.
        return Ok(false);
    };
    if session.worker_id != worker_id {
        return Ok(false);
    }
    match &event.kind {
        ConnectionEventKind::Opened {
            client_addr,
            endpoint,
        } => {
            apply_opened(tx, worker_id, event, &session, client_addr, endpoint).await?;
            Ok(false)
        }
        ConnectionEventKind::ChannelRefused(refusal) => {
            crate::gateway::channel_refused::record(tx, worker_id, event, &session, refusal);
            Ok(false)
        }
        ConnectionEventKind::Refused { .. } => Ok(false),
        ConnectionEventKind::ApiRequest(request) => {
            record_api_request(tx, worker_id, event, &session, request);
            Ok(false)
        }
        ConnectionEventKind::RecordingFailed(failure) => {
            record_recording_failed(tx, worker_id, event, &session, failure);
            Ok(false)
        }
        ConnectionEventKind::Closed {
            bytes_up,
            bytes_down,
            reason,
        } => {
            apply_closed(
                tx,
                worker_id,
                event,
                &session,
                *bytes_up,
                *bytes_down,
                *reason,
            )
            .await
        }
    }
}

/// The refusals a worker decided for one session (or none) and code over a window, recorded
/// as one `connection_refused` event (docs/audit.md). Delivery is at least once: a summary
/// resent after a lost acknowledgement is recorded again, with the same `summary_id`.
async fn apply_refused(
    tx: &mut AuditedTx,
    worker_id: &str,
    event: &ConnectionEvent,
) -> Result<(), StoreError> {
    let ConnectionEventKind::Refused {
        code,
        count,
        first_at_ms,
        last_at_ms,
        client_addr,
        message,
    } = &event.kind
    else {
        return Ok(());
    };
    let session = match event.session_id.as_str() {
        "" => None,
        id => session_rows::get(tx.read(), id).await?,
    };
    let time = |ms: u64| {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
        humantime::format_rfc3339_millis(at).to_string()
    };
    let summary_id = event
        .event_id
        .strip_suffix(":refused")
        .unwrap_or(&event.event_id);
    let refused = Event::ConnectionRefused {
        reason: serde_json::to_value(code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        details: event::ConnectionRefusal::Summary(event::RefusalSummary {
            count: *count,
            first_at: time(*first_at_ms),
            last_at: time(*last_at_ms),
            client_addr: client_addr.clone(),
            message: message.clone(),
            summary_id: summary_id.to_owned(),
        }),
    };
    let mut audited = AuditEvent::new(Actor::worker(worker_id), refused);
    if !event.session_id.is_empty() {
        audited = audited.session(&event.session_id);
    }
    if let Some(session) = &session {
        audited = audited.target(&session.target_id);
    }
    tx.record(audited);
    Ok(())
}

/// A recording the worker could not write, as it reported it: `recording_failed`. Delivery
/// is at least once, like every connection event.
/// One request through an injecting session's Proxmox API proxy, audited as `pve_request`
/// (method, redacted path, status, sizes; never a body or a header).
fn record_api_request(
    tx: &mut AuditedTx,
    worker_id: &str,
    event: &ConnectionEvent,
    session: &session_rows::SessionRecord,
    request: &portcullis_proto::pve::ApiRequest,
) {
    let details = event::PveRequest {
        connection_id: event.connection_id.clone(),
        method: request.method.clone(),
        path: request.path.clone(),
        status: request.status,
        bytes_up: request.bytes_up,
        bytes_down: request.bytes_down,
        millis: request.millis,
        refused: request.refused.clone(),
    };
    tx.record(
        AuditEvent::new(Actor::worker(worker_id), Event::PveRequest { details })
            .session(&event.session_id)
            .target(&session.target_id),
    );
}

fn record_recording_failed(
    tx: &mut AuditedTx,
    worker_id: &str,
    event: &ConnectionEvent,
    session: &session_rows::SessionRecord,
    failure: &portcullis_proto::recording::RecordingFailure,
) {
    let action = match failure.action {
        portcullis_proto::recording::FailureAction::ClosedChannels => "closed_channels",
        portcullis_proto::recording::FailureAction::ContinuedUnrecorded => "continued_unrecorded",
    };
    let failed = Event::RecordingFailed {
        details: event::RecordingFailed {
            recording_id: failure.recording_id.clone(),
            connection_id: event.connection_id.clone(),
            cause: failure.cause.clone(),
            message: failure.message.clone(),
            action: action.to_owned(),
        },
    };
    tx.record(
        AuditEvent::new(Actor::worker(worker_id), failed)
            .session(&event.session_id)
            .target(&session.target_id),
    );
}

/// A connection the worker opened by itself, recorded (and audited) the first time only.
async fn apply_opened(
    tx: &mut AuditedTx,
    worker_id: &str,
    event: &ConnectionEvent,
    session: &session_rows::SessionRecord,
    client_addr: &str,
    endpoint: &str,
) -> Result<(), StoreError> {
    let opened = connection_rows::connection_opened(
        tx.write(),
        &event.session_id,
        worker_id,
        &event.connection_id,
        client_addr,
        clock::to_i64(event.at),
    )
    .await?;
    if opened {
        let opened = Event::ConnectionOpened {
            details: event::ConnectionOpened {
                connection_id: event.connection_id.clone(),
                client_addr: client_addr.to_owned(),
                first: None,
                endpoint: Some(endpoint.to_owned()),
            },
        };
        tx.record(
            AuditEvent::new(Actor::worker(worker_id), opened)
                .session(&event.session_id)
                .target(&session.target_id),
        );
    }
    Ok(())
}

/// A connection's close, recorded (and audited) the first time only. True when it closed the
/// last connection the session's limit allowed.
async fn apply_closed(
    tx: &mut AuditedTx,
    worker_id: &str,
    event: &ConnectionEvent,
    session: &session_rows::SessionRecord,
    bytes_up: u64,
    bytes_down: u64,
    reason: EndReason,
) -> Result<bool, StoreError> {
    if !connection_rows::connection_closed(
        tx.write(),
        &event.session_id,
        worker_id,
        &event.connection_id,
        clock::to_i64(bytes_up),
        clock::to_i64(bytes_down),
        reason,
        clock::to_i64(event.at),
    )
    .await?
    {
        return Ok(false);
    }
    let audited = Event::ConnectionClosed {
        reason: reason.to_string(),
        details: event::ConnectionClosed {
            connection_id: event.connection_id.clone(),
            bytes_up,
            bytes_down,
        },
    };
    tx.record(
        AuditEvent::new(Actor::worker(worker_id), audited)
            .session(&event.session_id)
            .target(&session.target_id),
    );
    let Some(s) = session_rows::get(tx.read(), &event.session_id).await? else {
        return Ok(false);
    };
    Ok(s.state.is_live()
        && s.connection_limit > 0
        && s.connections_count >= s.connection_limit
        && connection_rows::open_connections(tx.read(), &s.id).await? == 0)
}

/// Why a worker's certificate was not renewed.
#[derive(Debug, thiserror::Error)]
enum RenewError {
    #[error("this worker is not active; enrol it again with a new join token")]
    NotActive,
    #[error("no live link for this worker; renew over the link the certificate is for")]
    NoLink,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
}

async fn renew(state: &AppState, worker_id: &str) -> Response {
    match issue_renewal(state, worker_id).await {
        Ok(renewed) => renewed,
        Err(RenewError::Store(err)) => store_error(state, err),
        Err(err) => error(err.to_string()),
    }
}

async fn issue_renewal(state: &AppState, worker_id: &str) -> Result<Response, RenewError> {
    let mut conn = state.store.conn().await?;
    let worker = worker_rows::find(&mut conn, worker_id)
        .await?
        .filter(|w| w.state == worker_rows::ACTIVE)
        .ok_or(RenewError::NotActive)?;
    drop(conn);
    // The worker's public key as the link saw it; kept in the store by fingerprint only, so
    // the renewal uses the key from the current link's certificate.
    let spki = state.links.spki(&worker.id).ok_or(RenewError::NoLink)?;
    let ca = state.keys.certificate_authority().await?;
    let lifetime = state.config.worker_cert_lifetime;
    let pem = ca.issue(&spki, Leaf::Worker { worker_id }, lifetime)?;
    let expires_at = state.clock.unix_secs() + lifetime.as_secs();
    let mut tx = state.begin_audited().await?;
    worker_rows::set_cert_expiry(tx.write(), worker_id, clock::to_i64(expires_at)).await?;
    let renewed = Event::WorkerCertificateRenewed {
        details: event::Expiry { expires_at },
    };
    tx.commit(AuditEvent::new(Actor::worker(worker_id), renewed))
        .await?;
    Ok(Response::Certificate {
        cert_pem: pem,
        expires_at,
    })
}
