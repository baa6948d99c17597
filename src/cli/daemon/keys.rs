//! `portcullis controller keys ...`: list, rotate, activate and retire the keyset's keys,
//! offline on the controller's store.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use portcullis_controller::secret::SecretString;

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// List keys (id, purpose, algorithm, state, creation); never private material.
    #[command(after_help = "\
Examples:
  # On `portcullis dev`'s store: dev.env sets PORTCULLIS_CONTROLLER_CONFIG (STATE/controller.toml).
  portcullis controller keys list
  portcullis controller keys list --json | jq -r '.[] | .id + \" \" + .purpose + \" \" + .state'
  # The TLS CA's algorithm (ecdsa-p256; ed25519 for a CA made before, which browsers refuse):
  portcullis controller keys list --json | jq -r '.[] | select(.purpose == \"tls-ca\") | .id + \" \" + .algorithm + \" \" + .state'

In a deployment:
  portcullis controller keys list --config /etc/portcullis/controller.toml")]
    List {
        #[arg(long, short, env = "PORTCULLIS_CONTROLLER_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Make a new active key for a purpose (grant, ssh-ca, ssh-host-ca, audit, recording); the old one stays valid
    /// for verification until retired. For tls-ca, the new CA is `next`: trusted by workers and
    /// clients from now on but not signing until `keys activate` (see docs/operations.md).
    #[command(after_help = "\
Examples:
  # On `portcullis dev`'s store: dev.env sets PORTCULLIS_CONTROLLER_CONFIG (STATE/controller.toml).
  portcullis controller keys rotate audit
  portcullis controller keys rotate grant

In a deployment (the TLS CA in steps: docs/operations.md, \"Rotating the TLS CA\"):
  portcullis controller keys rotate --config /etc/portcullis/controller.toml tls-ca")]
    Rotate {
        #[arg(long, short, env = "PORTCULLIS_CONTROLLER_CONFIG")]
        config: PathBuf,
        purpose: String,
    },
    /// Make the next TLS CA (from `keys rotate tls-ca`) the signing one, once workers and
    /// clients have its certificate; the old CA stays trusted until retired.
    #[command(after_help = "\
Examples:
  # On a store of its own in this directory (on a live controller, wait between the steps:
  # docs/operations.md, \"Rotating the TLS CA\"):
  printf '[store]\\nurl = \"sqlite://lab.db\"\\n[keys]\\nmaster_key_file = \"lab.key\"\\n' > lab.toml
  portcullis controller keygen --out lab.key
  portcullis controller migrate -c lab.toml
  portcullis controller keys rotate -c lab.toml tls-ca
  portcullis controller keys activate -c lab.toml \\
      \"$(portcullis controller keys list -c lab.toml --json | jq -r '.[] | select(.purpose == \"tls-ca\" and .state == \"next\") | .id')\"

In a deployment:
  portcullis controller keys activate --config /etc/portcullis/controller.toml k_0123...")]
    Activate {
        #[arg(long, short, env = "PORTCULLIS_CONTROLLER_CONFIG")]
        config: PathBuf,
        key_id: String,
    },
    /// Stop accepting a rotated-out key.
    #[command(after_help = "\
Examples:
  # On `portcullis dev`'s store: dev.env sets PORTCULLIS_CONTROLLER_CONFIG (STATE/controller.toml).
  # Rotate the grant key, then retire the one it replaced (grants it signed stop working):
  portcullis controller keys rotate grant
  portcullis controller keys retire \\
      \"$(portcullis controller keys list --json | jq -r '[.[] | select(.purpose == \"grant\" and .state == \"previous\")][0].id')\"

In a deployment:
  portcullis controller keys retire --config /etc/portcullis/controller.toml k_0123...")]
    Retire {
        #[arg(long, short, env = "PORTCULLIS_CONTROLLER_CONFIG")]
        config: PathBuf,
        key_id: String,
    },
}

pub(super) async fn run(
    cmd: KeysCommand,
    master_key: &Option<SecretString>,
) -> anyhow::Result<i32> {
    let load = |path: &std::path::Path| super::load_controller_config(path, master_key);
    match cmd {
        KeysCommand::List { config, json } => {
            let (_, keys) = portcullis_controller::open(&load(&config)?).await?;
            let rows = keys.list().await?;
            if json {
                let items: Vec<_> = rows
                    .iter()
                    .map(|k| serde_json::json!({"id": k.id, "purpose": k.purpose, "algorithm": k.algorithm, "state": k.state, "created_at": k.created_at, "retired_at": k.retired_at}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                println!(
                    "{:<28} {:<11} {:<11} {:<9} CREATED",
                    "ID", "PURPOSE", "ALGORITHM", "STATE"
                );
                for k in rows {
                    println!(
                        "{:<28} {:<11} {:<11} {:<9} {}",
                        k.id,
                        k.purpose,
                        k.algorithm,
                        k.state,
                        crate::cli::output::time(u64::try_from(k.created_at).unwrap_or(0))
                    );
                }
            }
            Ok(0)
        }
        KeysCommand::Rotate { config, purpose } => {
            let purpose = portcullis_controller::Purpose::parse(&purpose).with_context(|| {
                format!("unknown key purpose {purpose:?}: use grant, tls-ca, ssh-ca, ssh-host-ca, audit or recording")
            })?;
            let (_, keys) = portcullis_controller::open(&load(&config)?).await?;
            let id = keys.rotate(purpose).await?;
            println!("{id}");
            Ok(0)
        }
        KeysCommand::Activate { config, key_id } => {
            let (_, keys) = portcullis_controller::open(&load(&config)?).await?;
            keys.activate(&key_id).await?;
            eprintln!("activated {key_id}: the controllers issue their certificates from it within seconds; retire the previous TLS CA once every worker has renewed (see docs/operations.md)");
            Ok(0)
        }
        KeysCommand::Retire { config, key_id } => {
            let (_, keys) = portcullis_controller::open(&load(&config)?).await?;
            keys.retire(&key_id).await?;
            eprintln!("retired {key_id}");
            Ok(0)
        }
    }
}
