//! The real [`Opener`]: sessions authorised at the controller under the run's request (with
//! the run key's proof) through `connect`'s own session code, and kept here so that later
//! connections join them and the run ends them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use portcullis_proto::api::{CancelReason, Target};

use super::key::RunKey;
use super::protocol::SshPrepared;
use super::relay::{Opened, Opener, Stream};
use crate::cli::connect::run_session::{RunSession, SessionKeys};
use crate::cli::connect::ssh::trust;
use crate::cli::http::{segment, ApiClient};

/// Opens the run's sessions.
pub(crate) struct ApiOpener {
    api: ApiClient,
    request_id: String,
    key: RunKey,
    sessions: Mutex<HashMap<String, Arc<RunSession>>>,
}

impl ApiOpener {
    pub(crate) fn new(api: ApiClient, request_id: String, key: RunKey) -> Self {
        Self {
            api,
            request_id,
            key,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    async fn authorize(
        &self,
        target: &str,
        ssh_public_key: Option<String>,
        local_secret_sha256: Option<String>,
    ) -> anyhow::Result<Arc<RunSession>> {
        let sign = |message: &[u8]| self.key.sign(message);
        let keys = SessionKeys {
            ssh_public_key,
            local_secret_sha256,
        };
        let session =
            Arc::new(RunSession::open(&self.api, target, keys, &self.request_id, &sign).await?);
        eprintln!(
            "portcullis run: session {} to {target}",
            session.authorization.session_id
        );
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(session.authorization.session_id.clone(), session.clone());
        }
        Ok(session)
    }

    async fn prepare(&self, target: &str, ssh_public_key: &str) -> anyhow::Result<SshPrepared> {
        let record: Target = self
            .api
            .get(&format!("/v1/targets/{}", segment(target)?))
            .await?;
        if crate::cli::connect::ssh::known_hosts(&record).is_none() {
            anyhow::bail!(
                "target {} has no pinned SSH host key or host CA",
                record.name
            );
        }
        let session = self
            .authorize(target, Some(ssh_public_key.to_owned()), None)
            .await?;
        let auth = &session.authorization;
        let trust = trust::for_session(&record, auth)?;
        Ok(SshPrepared {
            session_id: auth.session_id.clone(),
            request_id: self.request_id.clone(),
            target: record.name,
            expires_at: auth.expires_at,
            login: auth.ssh_principals.first().cloned(),
            ssh_mode: trust.mode,
            alias: trust.alias,
            known_hosts: trust.known_hosts,
            certificate: trust.certificate,
        })
    }

    fn session(&self, session_id: &str) -> Option<Arc<RunSession>> {
        self.sessions.lock().ok()?.get(session_id).cloned()
    }

    /// Ends every session the run opened (as `closed`: the command is done with them).
    pub(crate) async fn end_all(&self) {
        let sessions: Vec<Arc<RunSession>> = match self.sessions.lock() {
            Ok(mut sessions) => sessions.drain().map(|(_, s)| s).collect(),
            Err(_) => return,
        };
        for session in sessions {
            session.cancel(&self.api, CancelReason::Closed).await;
        }
    }
}

impl Opener for ApiOpener {
    fn open<'a>(
        &'a self,
        target: &'a str,
        local_secret_sha256: Option<String>,
    ) -> BoxFuture<'a, Result<Opened, String>> {
        Box::pin(async move {
            let session = self
                .authorize(target, None, local_secret_sha256)
                .await
                .map_err(|err| format!("{err:#}"))?;
            Ok(Opened {
                session_id: session.authorization.session_id.clone(),
                expires_at: session.authorization.expires_at,
                proxmox: session.authorization.proxmox.clone(),
            })
        })
    }

    fn prepare_ssh<'a>(
        &'a self,
        target: &'a str,
        ssh_public_key: &'a str,
    ) -> BoxFuture<'a, Result<SshPrepared, String>> {
        Box::pin(async move {
            self.prepare(target, ssh_public_key)
                .await
                .map_err(|err| format!("{err:#}"))
        })
    }

    fn connect<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn Stream>, String>> {
        Box::pin(async move {
            let session = self
                .session(session_id)
                .ok_or_else(|| format!("session {session_id} is not one of this run's sessions"))?;
            let stream = session.connect().await.map_err(|err| format!("{err:#}"))?;
            Ok(Box::new(stream) as Box<dyn Stream>)
        })
    }
}
