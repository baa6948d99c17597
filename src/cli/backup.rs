//! `portcullis controller backup` and `controller restore` (docs/operations.md "Backups and
//! restore"). The work is the controller crate's (`backup::create`, `backup::restore`); this
//! reads the passphrase and prints the result.
//!
//! The passphrase is never an argument: it comes from a file only its owner can read
//! (`--passphrase-file`), or is typed twice (once for a restore) on a terminal without echo.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use portcullis_controller::backup::{self, Passphrase};
use portcullis_controller::secret::SecretString;
use zeroize::Zeroizing;

/// What `controller backup` was asked.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  # On `portcullis dev`'s store: dev.env sets PORTCULLIS_CONTROLLER_CONFIG (STATE/controller.toml).
  (umask 077; echo 'a long backup passphrase' > passphrase.txt)
  portcullis controller backup --out backup --passphrase-file passphrase.txt

In a deployment:
  portcullis controller backup --config /etc/portcullis/controller.toml --out /var/backups/portcullis/2026-12-01
  portcullis controller backup -c controller.toml --out DIR --passphrase-file /root/backup-passphrase --json")]
pub(crate) struct BackupArgs {
    #[arg(long, short, env = "PORTCULLIS_CONTROLLER_CONFIG")]
    pub config: PathBuf,
    /// The backup's directory: created (mode 0700), or an existing empty one.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Read the passphrase that seals the master key from FILE (mode 0600 or stricter; at
    /// least 12 characters). Without it, it is typed twice on the terminal.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Print the manifest and its hash as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What `controller restore` was asked.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  # A backup of `portcullis dev`'s store, restored into a new store and key in this directory:
  (umask 077; echo 'a long backup passphrase' > passphrase.txt)
  portcullis controller backup --out backup --passphrase-file passphrase.txt
  printf '[store]\\nurl = \"sqlite://restored.db\"\\n[keys]\\nmaster_key_file = \"restored.key\"\\n' > restored.toml
  portcullis controller restore -c restored.toml --from backup --passphrase-file passphrase.txt

In a deployment:
  portcullis controller restore --config /etc/portcullis/controller.toml --from /var/backups/portcullis/2026-12-01
  portcullis controller restore -c new.toml --from DIR --passphrase-file /root/backup-passphrase --json")]
pub(crate) struct RestoreArgs {
    /// The new controller's config: the store and master key file it names must not exist
    /// yet (for PostgreSQL, the database must hold the restored dump).
    #[arg(long, short, env = "PORTCULLIS_CONTROLLER_CONFIG")]
    pub config: PathBuf,
    /// The backup's directory (`controller backup --out`).
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// Read the passphrase from FILE (mode 0600 or stricter). Without it, it is typed on the
    /// terminal.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Print what was restored as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub(crate) async fn run_backup(
    args: BackupArgs,
    load: impl Fn(&Path) -> anyhow::Result<portcullis_controller::Config>,
) -> anyhow::Result<i32> {
    let config = load(&args.config)?;
    let passphrase = passphrase(args.passphrase_file.as_deref(), true)?;
    let operator = portcullis_controller::admin::Operator {
        account: format!("uid={}", rustix::process::getuid().as_raw()),
    };
    let started = std::time::Instant::now();
    let done = backup::create(&config, &args.out, &passphrase, &operator)
        .await
        .context("the backup failed; nothing of it was kept")?;
    let m = &done.manifest;
    let size: u64 = m.files.iter().map(|f| f.size).sum();
    if args.json {
        let out = serde_json::json!({
            "dir": done.dir,
            "manifest": m,
            "manifest_sha256": done.manifest_sha256,
            "bytes": size,
            "seconds": started.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}", done.dir.display());
        eprintln!(
            "backup of the {} store written to {} ({} files, {size} bytes, schema {}, audit \
             head {}); recorded as backup_created (manifest sha256 {})",
            m.store.as_str(),
            done.dir.display(),
            m.files.len() + 1,
            m.schema_version,
            m.audit_head,
            done.manifest_sha256
        );
    }
    if let Some(pg) = &m.postgres {
        eprintln!(
            "The PostgreSQL database is not in the backup: copy it now with\n  {}\n\
             and to restore, into a new empty database:\n  {}\n  \
             portcullis controller restore --config NEW.toml --from {}",
            pg.dump,
            pg.restore,
            done.dir.display()
        );
    }
    eprintln!(
        "Keep the passphrase apart from the backup: without it the master key, and so every \
         private key in the store, cannot be opened."
    );
    Ok(0)
}

pub(crate) async fn run_restore(
    args: RestoreArgs,
    load: impl Fn(&Path) -> anyhow::Result<portcullis_controller::Config>,
) -> anyhow::Result<i32> {
    let config = load(&args.config)?;
    let passphrase = passphrase(args.passphrase_file.as_deref(), false)?;
    let done = backup::restore(&config, &args.from, &passphrase)
        .await
        .context("the restore was refused")?;
    let head = done
        .audit_head
        .as_ref()
        .map_or_else(|| "empty".to_owned(), ToString::to_string);
    if args.json {
        let out = serde_json::json!({
            "manifest": done.manifest,
            "store_file": done.store_file,
            "recordings_file": done.recordings_file,
            "master_key_file": done.master_key_file,
            "keys": done.keys,
            "audit": {"verified": true, "events": done.audit_events, "head": done.audit_head},
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let store = done.store_file.as_ref().map_or_else(
            || "the PostgreSQL database of store.url (checked)".to_owned(),
            |p| p.display().to_string(),
        );
        eprintln!(
            "restored the backup of {} (schema {}): store {store}{}{}; the master key opens \
             all {} keys; the audit chain verifies ({} events, head {head}).\n\
             Start the controller with\n  portcullis controller run --config {}",
            done.manifest.created_at,
            done.manifest.schema_version,
            done.recordings_file
                .as_ref()
                .map(|p| format!(", recordings {}", p.display()))
                .unwrap_or_default(),
            done.master_key_file
                .as_ref()
                .map(|p| format!(", master key {} (mode 0600)", p.display()))
                .unwrap_or_default(),
            done.keys,
            done.audit_events,
            args.config.display()
        );
    }
    Ok(0)
}

/// The passphrase from `file`, or typed on the terminal (twice when `confirm`).
fn passphrase(file: Option<&Path>, confirm: bool) -> anyhow::Result<Passphrase> {
    let text = match file {
        Some(path) => Zeroizing::new(
            portcullis_files::read_owner_only(path)
                .with_context(|| format!("cannot read the passphrase file {}", path.display()))?,
        ),
        None => {
            if !std::io::stdin().is_terminal() {
                bail!(
                    "no passphrase: give --passphrase-file FILE (mode 0600), or run on a \
                     terminal to type it"
                );
            }
            let first = typed("Backup passphrase: ")?;
            if confirm {
                let second = typed("Again: ")?;
                if *first != *second {
                    bail!("the two passphrases differ; nothing was written");
                }
            }
            first
        }
    };
    Ok(Passphrase::new(SecretString::from(text.to_string()))?)
}

/// One line typed on the terminal without echo.
fn typed(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    crate::cli::no_echo::without_echo(|| {
        eprint!("{prompt}");
        std::io::stderr().flush().ok();
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the terminal")?;
        Ok(Zeroizing::new(
            line.trim_end_matches(['\n', '\r']).to_owned(),
        ))
    })
}
