//! `portcullis controller init` (docs/auth.md "The first admin"): the first start of a
//! controller without an OpenID provider. It creates the master key when its file is missing,
//! creates and migrates the database, and makes the first admin: an ordinary local user
//! (issuer `local:`) whose password is a random bootstrap credential, which must be replaced
//! at the first login (with TOTP enrolled) and expires after `[auth.local]
//! bootstrap_lifetime`. The user and `controller_initialised` commit in one audited
//! transaction.
//!
//! The credential is returned once (or written to a file only its owner can read before the
//! transaction commits, so it is never lost); it reaches no log, no audit event and no
//! `Debug`. Only its argon2id hash is stored. It is not an API token: as a Bearer token it is
//! refused like any unknown token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::audit::{event, Actor, AuditEvent, AuditedTx, Event};
use crate::clock;
use crate::config::{Config, MasterKeySource};
use crate::ids::{new_id, IdKind};
use crate::keys::{KeyError, Keyset, MasterKey};
use crate::local_auth::password::{self, NewPassword};
use crate::local_users::LOCAL_USERS_ISSUER;
use crate::secret::{ExposeSecret as _, SecretString};
use crate::store::local_users::{self as rows, LocalUserRecord};
use crate::store::users::{self, UserRecord};
use crate::store::{Dialect, Store, StoreError};
use crate::tokens::{valid_username, Operator};

/// How every bootstrap credential starts, so that it is recognised in a paste or a leak.
pub(crate) const BOOTSTRAP_PREFIX: &str = "pcb_";
/// The credential's random bytes: 160 bits.
const BOOTSTRAP_BYTES: usize = 20;

/// Why `controller init` did nothing (or, after creating the master key, removed it again).
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "already initialised: this controller has users. Use `portcullis controller users add|reset` \
         to create a local user or give one a new password"
    )]
    AlreadyInitialised,
    #[error(
        "[auth.local] enabled = false: the first admin is a local user and could not log in. \
         Remove that line (local users are enabled by default), or skip `controller init` and \
         give your OpenID provider's admins a group the policy's admin role names"
    )]
    LocalAuthDisabled,
    #[error("{0:?} is not a {1} name: use 1-64 letters, digits, `-`, `_`, `.` or `@`")]
    InvalidName(String, &'static str),
    #[error("the first admin needs at least one group (--groups G[,G]): groups choose its roles")]
    NoGroups,
    #[error("the bootstrap file {0} exists: remove it or name another file")]
    BootstrapFileExists(PathBuf),
    #[error("cannot write the bootstrap file {path}: {message}")]
    BootstrapFile { path: PathBuf, message: String },
    #[error("cannot make the bootstrap credential: {0}")]
    Credential(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// Where the master key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// `init` wrote a new one to `keys.master_key_file`.
    Created,
    /// The file existed, or `PORTCULLIS_MASTER_KEY` gave it.
    Existing,
}

impl KeyOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOrigin::Created => "created",
            KeyOrigin::Existing => "existing",
        }
    }
}

/// Where the bootstrap credential goes.
#[derive(Debug, Clone, Copy)]
pub enum Delivery<'a> {
    /// Returned to the caller, to be printed once.
    Print,
    /// Written to this file (mode 0600, atomically; an existing file is refused).
    File(&'a Path),
}

impl Delivery<'_> {
    fn audit_name(&self) -> &'static str {
        match self {
            Delivery::Print => "printed",
            Delivery::File(_) => "file",
        }
    }
}

/// What `controller init` was asked.
pub struct InitRequest<'a> {
    pub admin: &'a str,
    pub groups: Vec<String>,
    pub delivery: Delivery<'a>,
    pub operator: &'a Operator,
}

/// What `controller init` did.
pub struct Initialised {
    pub master_key: KeyOrigin,
    /// `keys.master_key_file`, unless `PORTCULLIS_MASTER_KEY` gave the key.
    pub master_key_file: Option<PathBuf>,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    pub admin: String,
    pub user_id: String,
    pub groups: Vec<String>,
    /// When the credential stops working (Unix seconds).
    pub expires_at: i64,
    /// The credential, to show once; `None` when it was written to a file.
    pub credential: Option<SecretString>,
}

/// Initialises the controller `config` describes (see the module's documentation).
pub async fn init(config: &Config, request: InitRequest<'_>) -> Result<Initialised, InitError> {
    check_request(config.local_auth.enabled, request.admin, &request.groups)?;
    if let Delivery::File(path) = request.delivery {
        if path.symlink_metadata().is_ok() {
            return Err(InitError::BootstrapFileExists(path.to_owned()));
        }
    }
    let store = Store::connect(&config.store_url, config.store_max_connections).await?;
    let done = init_on(&store, config, request).await;
    store.close().await;
    done
}

async fn init_on(
    store: &Store,
    config: &Config,
    request: InitRequest<'_>,
) -> Result<Initialised, InitError> {
    store.migrate().await?;
    // Before the master key: an initialised controller gets no new key file.
    if initialised(&mut *store.conn().await?).await? {
        return Err(InitError::AlreadyInitialised);
    }
    let (master, origin) = master_key(&config.master_key)?;
    let done = first_admin(store, config, request, master, origin).await;
    if let (Err(_), KeyOrigin::Created, MasterKeySource::File(path)) =
        (&done, origin, &config.master_key)
    {
        // Nothing was sealed with it: a second run starts afresh instead of finding a key
        // that may not open the keyset.
        let _ = std::fs::remove_file(path);
    }
    done
}

async fn first_admin(
    store: &Store,
    config: &Config,
    request: InitRequest<'_>,
    master: MasterKey,
    origin: KeyOrigin,
) -> Result<Initialised, InitError> {
    let keys = Keyset::new(store.clone(), master).with_clock(clock::system());
    keys.ensure().await?;
    let local = &config.local_auth;
    let credential = new_credential()?;
    let checked = NewPassword::new(
        SecretString::from(credential.expose_secret().to_owned()),
        local.min_password_length,
    )
    .map_err(|e| InitError::Credential(e.to_string()))?;
    let hash =
        password::hash(&checked, local.argon2).map_err(|e| InitError::Credential(e.to_string()))?;
    let now = clock::to_i64(keys.clock().unix_secs());
    let expires_at = expiry(now, local.bootstrap_lifetime);

    let mut tx = AuditedTx::begin(store, &keys).await?;
    if initialised(tx.read()).await? {
        return Err(InitError::AlreadyInitialised);
    }
    let user = users::upsert(
        tx.write(),
        &UserRecord {
            id: new_id(IdKind::User),
            issuer: LOCAL_USERS_ISSUER.into(),
            subject: request.admin.to_owned(),
            username: request.admin.to_owned(),
            email: None,
            name: None,
            groups: request.groups,
            amr: vec![],
            acr: None,
            auth_time: None,
            updated_at: now,
        },
    )
    .await?;
    rows::insert(
        tx.write(),
        &LocalUserRecord {
            user_id: user.id.clone(),
            password_hash: hash.as_phc().to_owned(),
            must_change_password: true,
            password_expires_at: Some(expires_at),
            totp_secret: None,
            totp_last_step: None,
            disabled_at: None,
            created_at: now,
            updated_at: now,
        },
    )
    .await?;
    // Written before the commit, so that a committed admin always has its credential
    // somewhere; removed again if the commit fails.
    if let Delivery::File(path) = request.delivery {
        write_bootstrap_file(path, &credential)?;
    }
    let event = AuditEvent::new(
        Actor::local(&request.operator.account),
        Event::ControllerInitialised {
            details: event::ControllerInitialised {
                master_key: origin.as_str().into(),
                store: store_name(store.dialect()).into(),
                admin: event::LocalUserRef {
                    user: user.username.clone(),
                    user_id: user.id.clone(),
                    issuer: user.issuer.clone(),
                },
                groups: user.groups.clone(),
                bootstrap_expires_at: u64::try_from(expires_at).unwrap_or(0),
                bootstrap_delivery: request.delivery.audit_name().into(),
            },
        },
    );
    if let Err(e) = tx.commit(event).await {
        if let Delivery::File(path) = request.delivery {
            let _ = std::fs::remove_file(path);
        }
        return Err(e.into());
    }
    Ok(Initialised {
        master_key: origin,
        master_key_file: match &config.master_key {
            MasterKeySource::File(path) => Some(path.clone()),
            MasterKeySource::Env(_) => None,
        },
        store: store_name(store.dialect()),
        admin: user.username,
        user_id: user.id,
        groups: user.groups,
        expires_at,
        credential: match request.delivery {
            Delivery::Print => Some(credential),
            Delivery::File(_) => None,
        },
    })
}

/// Refuses what `init` cannot make a working first admin of.
fn check_request(local_enabled: bool, admin: &str, groups: &[String]) -> Result<(), InitError> {
    if !local_enabled {
        return Err(InitError::LocalAuthDisabled);
    }
    if !valid_username(admin) {
        return Err(InitError::InvalidName(admin.to_owned(), "user"));
    }
    if groups.is_empty() {
        return Err(InitError::NoGroups);
    }
    if let Some(bad) = groups.iter().find(|g| !valid_username(g)) {
        return Err(InitError::InvalidName(bad.clone(), "group"));
    }
    Ok(())
}

/// Whether any user exists (a local user has its `users` row too, like one from any other
/// issuer): then the controller has been set up.
async fn initialised(conn: &mut sqlx::AnyConnection) -> Result<bool, StoreError> {
    users::any(conn).await
}

/// The master key `source` names, created first when its file is missing.
fn master_key(source: &MasterKeySource) -> Result<(MasterKey, KeyOrigin), KeyError> {
    match source {
        MasterKeySource::Env(hex) => Ok((MasterKey::from_hex(hex)?, KeyOrigin::Existing)),
        MasterKeySource::File(path) => {
            let origin = match path.symlink_metadata() {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    MasterKey::generate_file(path, false)?;
                    KeyOrigin::Created
                }
                _ => KeyOrigin::Existing,
            };
            Ok((MasterKey::from_file(path)?, origin))
        }
    }
}

/// A new bootstrap credential: the prefix and 160 random bits in lower-case base32 (36
/// characters, nothing to mistype in a paste).
fn new_credential() -> Result<SecretString, InitError> {
    let bytes: [u8; BOOTSTRAP_BYTES] = portcullis_crypto::random::bytes()
        .map_err(|_| InitError::Credential("no system randomness".into()))?;
    let encoded = data_encoding::BASE32_NOPAD
        .encode(&bytes)
        .to_ascii_lowercase();
    Ok(SecretString::from(format!("{BOOTSTRAP_PREFIX}{encoded}")))
}

/// When a credential made at `now` stops working.
fn expiry(now: i64, lifetime: Duration) -> i64 {
    now.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX))
}

fn store_name(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "sqlite",
        Dialect::Postgres => "postgres",
    }
}

fn write_bootstrap_file(path: &Path, credential: &SecretString) -> Result<(), InitError> {
    let text = zeroize::Zeroizing::new(format!("{}\n", credential.expose_secret()));
    portcullis_files::create_private_atomic(path, text.as_bytes()).map_err(|e| match e {
        portcullis_files::WriteError::Exists { .. } => {
            InitError::BootstrapFileExists(path.to_owned())
        }
        other => InitError::BootstrapFile {
            path: path.to_owned(),
            message: other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests;
