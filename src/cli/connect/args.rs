//! The arguments of `portcullis connect`: the target, how connections are carried (one of
//! `--listen-port`, `--listen-unix`, `--socket`, `--stdio`, `--exec` (with `--listen-port`
//! to choose its port), or only `--write-session-file`; nothing for a Proxmox API target's
//! default socket), and the protocol-aware `connect ssh`.

use std::path::PathBuf;

use super::{listen_addr, postgres, rdp, ssh, template, web};
use crate::cli::http::ClientArgs;

const EXAMPLES: &str = "\
Examples:
  # One connection over stdin/stdout, e.g. ssh's ProxyCommand (`portcullis dev`'s echo target):
  printf 'hello\\n' | portcullis connect echo --stdio
  # A local port for the session; every connection to it is brokered (0: a free one):
  portcullis connect echo --listen-port 0   # Ctrl-C ends it
  # The same on a 0600 Unix socket (a loopback port is open to every local user):
  portcullis connect echo --listen-unix echo.sock   # Ctrl-C ends it
  # Run a command against a local listener; the session ends when it exits:
  portcullis connect echo --exec sh -- -c 'echo \"session $PORTCULLIS_SESSION_ID on {host}:{port}\"'
  # For scripts: a 0600 hand-off file, the session kept open until Ctrl-C; other processes
  # join it with --stdio --session-file echo.session:
  portcullis connect echo --write-session-file echo.session   # Ctrl-C ends it
  # Templates for --exec: {{addr}} and {{port}} in its arguments; --env sets the command's
  # environment (the only place a leased secret, {{secret.FIELD}}, may go):
  portcullis connect echo --env ECHO_ADDR={{addr}} --exec sh -- -c 'echo \"via $ECHO_ADDR\"'
  # A target named like a subcommand (here `echo` stands in for a target named `ssh`):
  portcullis connect --target echo --listen-port 0   # Ctrl-C ends it
  # Another address than loopback, for the listed clients only (a warning says so):
  portcullis connect echo --listen-addr 127.0.0.2 --listen-port 0 --allow 127.0.0.3   # Ctrl-C ends it

In a deployment:
  # A database with credentials Vault leases to the session, never on the command line:
  portcullis connect db-01 --env PGPASSWORD={{secret.password}} --env PGUSER={{secret.username}} \
      --exec psql -- -h {{host}} -p {{port}} -d postgres -c 'select current_user'
  # A colleague's machine on the LAN reaches a plain TCP target through your session:
  portcullis connect grafana --listen-addr 192.168.1.10 --listen-port 3000 --allow 192.168.1.0/24
  portcullis connect web --listen-port 2222
  ssh -p 2222 admin@127.0.0.1
  portcullis connect pve --listen-unix ~/.portcullis/pve.sock
  #   ProxyCommand portcullis connect %h --stdio
  portcullis connect web --stdio
  portcullis connect web --exec ssh -- -p {port} admin@{host}
  portcullis connect pve --exec curl -- --cacert pve-ca.pem \\
      --connect-to pve.lan:8006:{host}:{port} https://pve.lan:8006/api2/json/version
  portcullis connect web --write-session-file /run/user/1000/web.session &
  portcullis connect web --stdio --session-file /run/user/1000/web.session

  # Your own SSH key for tools that run ssh themselves (Terraform, Ansible): in gateway
  # mode the listening line gives the options that check the gateway's host certificate.
  portcullis connect web-01 --listen-port 2222 --ssh-key ~/.ssh/id_ed25519.pub
  ssh -o HostKeyAlias=portcullis-gateway -o UserKnownHostsFile=/tmp/portcullis-connect-XXXX/known_hosts \\
      -o StrictHostKeyChecking=yes -p 2222 admin@127.0.0.1
  portcullis connect web-01 --ssh-key ~/.ssh/id_ed25519 --exec ssh -- \\
      -o HostKeyAlias=portcullis-gateway -o 'UserKnownHostsFile={known_hosts}' \\
      -o StrictHostKeyChecking=yes -p {port} admin@{host} uptime

Proxmox API targets (docs/proxmox.md): the worker adds a Proxmox API token minted for the
session to every request; no Proxmox secret is on this machine.
  # The API on a 0600 unix socket ($XDG_RUNTIME_DIR/portcullis/pve-1.sock, or --socket PATH):
  portcullis connect pve-1
  curl --unix-socket $XDG_RUNTIME_DIR/portcullis/pve-1.sock http://pve/api2/json/version

  # Terraform (bpg/proxmox) with no token in its configuration: the provider reads
  # PROXMOX_VE_ENDPOINT and PROXMOX_VE_API_TOKEN, and SSL_CERT_FILE trusts the local CA.
  portcullis connect pve-1 --exec -- terraform apply

  # Ansible's community.proxmox modules read PROXMOX_HOST, PROXMOX_PORT, PROXMOX_USER,
  # PROXMOX_TOKEN_ID, PROXMOX_TOKEN_SECRET and PROXMOX_VALIDATE_CERTS (leave api_* out of
  # the play):
  portcullis connect pve-1 --exec -- ansible-playbook vms.yml

  # curl and scripts (proxmoxer): PORTCULLIS_PVE_URL, and REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE.
  portcullis connect pve-1 --exec -- sh -c \\
      'curl -H \"Authorization: PVEAPIToken=$PROXMOX_VE_API_TOKEN\" $PORTCULLIS_PVE_URL/api2/json/nodes'

  # Loopback HTTPS on a port of your choice, for clients started elsewhere; the secret every
  # request needs is in the 0600 environment file the listening line names.
  portcullis connect pve-1 --listen-port 8006

With --exec or --listen-port the CLI serves https://localhost:PORT/ with a certificate of
your own local CA (CONFIG/portcullis/local-ca/, valid only for localhost, 127.0.0.1 and ::1)
and every request must carry the session's secret (as the PVEAPIToken secret, or in
X-Portcullis-Session-Secret); the worker checks it and strips it. The command gets
PORTCULLIS_PVE_URL, PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN, PROXMOX_HOST, PROXMOX_PORT,
PROXMOX_USER, PROXMOX_TOKEN_ID, PROXMOX_TOKEN_SECRET, PROXMOX_VALIDATE_CERTS=true, and
SSL_CERT_FILE, REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE (the system's roots and the local CA,
removed at exit).

With --json, the listening line is one JSON object on stdout:
  {\"session_id\", \"target\", \"address\", \"port\" (or \"path\"), \"expires_at\" (unix seconds)}
and with --ssh-key also \"ssh\": {\"mode\", \"logins\", \"login\", \"options\" (ssh arguments),
  \"command\", \"known_hosts\" (gateway mode) or \"certificate\" (certificate mode)};
for a Proxmox API target also \"proxmox\": {\"cluster\", \"token_id\", \"roles\", \"paths\",
  \"expires_at\", \"access_writes\"}, \"url\", and with --listen-port \"ca_file\" and \"env_file\"";

/// Open a brokered session to a target and carry connections through it.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(after_help = EXAMPLES)]
#[command(group(
    clap::ArgGroup::new("mode")
        .args(["listen_unix", "socket", "stdio", "exec"])
        .multiple(false)
))]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct ConnectArgs {
    #[command(subcommand)]
    pub kind: Option<ConnectKind>,
    /// The target's id or name.
    #[arg(required_unless_present = "target_flag")]
    pub target: Option<String>,
    /// The target's id or name, for a target named like a subcommand (`--target ssh`).
    #[arg(long = "target", value_name = "NAME", conflicts_with = "target")]
    pub target_flag: Option<String>,
    /// Listen on 127.0.0.1:PORT (0 picks a free port and prints it). With --exec: the port
    /// the command is given. For a Proxmox API target this serves HTTPS (see below).
    #[arg(long, value_name = "PORT", conflicts_with_all = ["listen_unix", "socket", "stdio"])]
    pub listen_port: Option<u16>,
    /// With --listen-port: listen on ADDR instead of 127.0.0.1. An address other than
    /// loopback prints a warning and needs --allow; refused for sessions that inject
    /// credentials (SSH gateway, Proxmox API token, leased secrets).
    #[arg(
        long,
        value_name = "ADDR",
        requires = "listen_port",
        conflicts_with = "exec"
    )]
    pub listen_addr: Option<std::net::IpAddr>,
    /// With --listen-addr: who may connect (repeatable; a bare address is /32 or /128);
    /// connections from elsewhere are closed before anything is brokered.
    #[arg(long, value_name = "CIDR", requires = "listen_addr", value_parser = listen_addr::parse_cidr)]
    pub allow: Vec<ipnet::IpNet>,
    /// Listen on a Unix socket created with mode 0600, removed at exit.
    #[arg(long, value_name = "PATH")]
    pub listen_unix: Option<PathBuf>,
    /// For a Proxmox API target: serve its API on this Unix socket (0600, removed at exit)
    /// instead of the default $XDG_RUNTIME_DIR/portcullis/TARGET.sock.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Carry one connection over stdin/stdout (ssh ProxyCommand).
    #[arg(long)]
    pub stdio: bool,
    /// With --stdio: join the session in this hand-off file instead of opening one.
    #[arg(long, value_name = "PATH", requires = "stdio")]
    pub session_file: Option<PathBuf>,
    /// Write a 0600 hand-off file for the session (removed at exit), so that
    /// `--stdio --session-file PATH` can join it; alone, keeps the session open until Ctrl-C.
    #[arg(long, value_name = "PATH", conflicts_with = "session_file")]
    pub write_session_file: Option<PathBuf>,
    /// Run CMD against a local listener, with `{host}` and `{port}` replaced in CMD and ARGS;
    /// the session ends when it exits, and its exit code is returned. Not run by a shell.
    /// `--exec -- CMD ARGS...` names the command after `--`.
    #[arg(long, value_name = "CMD", num_args = 0..=1, default_missing_value = "")]
    pub exec: Option<String>,
    /// Arguments for --exec, after `--` (the command itself too, when --exec names none).
    #[arg(last = true, value_name = "ARGS", requires = "exec")]
    pub args: Vec<String>,
    /// Bind your own SSH key into the session: PATH is its public key file (or the private
    /// key file with PATH.pub beside it; only the public half is read). In gateway mode the
    /// gateway accepts this key and no other, and the listening line gives the ssh options
    /// that check the gateway; in certificate mode the session's certificate is written
    /// beside the key (KEY-cert.pub, where ssh finds it) and removed at exit.
    #[arg(long, value_name = "PATH", conflicts_with = "stdio")]
    pub ssh_key: Option<PathBuf>,
    /// Print the listening line as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Set NAME in the --exec command's environment to TEMPLATE (repeatable), e.g.
    /// `--env PGPASSWORD={{secret.password}}`: `{{addr}}`, `{{host}}`, `{{port}}`, and the
    /// session's leased secrets `{{secret.FIELD}}` or `{{secret.N.FIELD}}`, which may only go
    /// here, never into the command line (docs/secrets.md).
    #[arg(long = "env", value_name = "NAME=TEMPLATE", value_parser = template::parse_env, requires = "exec")]
    pub env: Vec<template::EnvTemplate>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Protocol-aware ways to connect.
#[derive(clap::Subcommand, Debug, Clone)]
pub(crate) enum ConnectKind {
    /// Run OpenSSH through a brokered session: with a short-lived certificate, or through
    /// the worker's SSH gateway, as the policy decides.
    Ssh(ssh::SshArgs),
    /// Serve a web target (Proxmox UI, Grafana...) on https://localhost:PORT/ with the Host
    /// it expects; prints the URL, and opens the browser with --open.
    Http(web::HttpArgs),
    /// Run a Remote Desktop client through a brokered session, or print a local address for
    /// one (--no-launch).
    Rdp(rdp::RdpArgs),
    /// Run psql through a brokered session, logged in with the database credentials Vault
    /// leased to the session.
    Postgres(postgres::PostgresArgs),
}

impl ConnectArgs {
    /// The target, positional or `--target NAME`.
    pub(crate) fn target_name(&self) -> Option<&str> {
        self.target.as_deref().or(self.target_flag.as_deref())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(super) mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: ConnectArgs,
    }

    pub(in crate::cli::connect) fn parse(args: &[&str]) -> Result<ConnectArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("connect").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn modes_are_exclusive_and_exec_takes_trailing_args() {
        let args = parse(&["web", "--exec", "ssh", "--", "-p", "{port}", "u@{host}"]).unwrap();
        assert_eq!(args.exec.as_deref(), Some("ssh"));
        assert_eq!(args.args, ["-p", "{port}", "u@{host}"]);
        assert!(parse(&["web", "--stdio", "--listen-port", "0"]).is_err());
        assert!(parse(&["web", "--socket", "s", "--listen-port", "0"]).is_err());
        assert!(parse(&["web", "--socket", "s", "--listen-unix", "u"]).is_err());
        assert!(parse(&["web", "--socket", "s", "--exec", "x"]).is_err());
        // --listen-port chooses the port --exec's command is given.
        let args = parse(&["web", "--listen-port", "8006", "--exec", "x"]).unwrap();
        assert_eq!(args.listen_port, Some(8006));
        assert!(
            parse(&["web", "--session-file", "f"]).is_err(),
            "needs --stdio"
        );
        assert!(parse(&["web", "--stdio", "--session-file", "f"]).is_ok());
        assert!(parse(&["web", "--listen-port", "0", "--write-session-file", "f"]).is_ok());
        let args = parse(&["web", "--listen-port", "0", "--ssh-key", "k.pub"]).unwrap();
        assert_eq!(args.ssh_key, Some(PathBuf::from("k.pub")));
        assert!(parse(&["web", "--stdio", "--ssh-key", "k.pub"]).is_err());
    }

    #[test]
    fn a_target_named_like_a_subcommand_is_reached_with_the_target_flag() {
        let args = parse(&["--target", "ssh", "--listen-port", "0"]).unwrap();
        assert!(args.kind.is_none());
        assert_eq!(args.target_name(), Some("ssh"));
        // `connect ssh web` is still the ssh subcommand.
        let args = parse(&["ssh", "web"]).unwrap();
        assert!(matches!(args.kind, Some(ConnectKind::Ssh(_))));
        let args = parse(&["http", "grafana"]).unwrap();
        assert!(matches!(args.kind, Some(ConnectKind::Http(_))));
        // Not both, and not neither.
        assert!(parse(&["web", "--target", "web", "--listen-port", "0"]).is_err());
        assert!(parse(&["--listen-port", "0"]).is_err());
    }

    #[test]
    fn listen_addr_needs_a_port_and_allow_needs_an_address() {
        let args = parse(&[
            "web",
            "--listen-port",
            "0",
            "--listen-addr",
            "192.168.1.2",
            "--allow",
            "192.168.1.0/24",
            "--allow",
            "10.0.0.7",
        ])
        .unwrap();
        assert_eq!(args.listen_addr, Some("192.168.1.2".parse().unwrap()));
        let allow: Vec<String> = args.allow.iter().map(ToString::to_string).collect();
        assert_eq!(allow, ["192.168.1.0/24", "10.0.0.7/32"]);
        assert!(
            parse(&["web", "--listen-addr", "0.0.0.0"]).is_err(),
            "needs --listen-port"
        );
        assert!(parse(&["web", "--listen-port", "0", "--allow", "10.0.0.0/8"]).is_err());
        assert!(parse(&["web", "--listen-port", "0", "--listen-addr", "nope"]).is_err());
        assert!(parse(&[
            "web",
            "--listen-port",
            "0",
            "--listen-addr",
            "0.0.0.0",
            "--allow",
            "10.0.0.0/33"
        ])
        .is_err());
        assert!(parse(&[
            "web",
            "--listen-port",
            "0",
            "--listen-addr",
            "0.0.0.0",
            "--exec",
            "x"
        ])
        .is_err());
    }

    #[test]
    fn exec_may_name_its_command_after_the_dashes() {
        let args = parse(&["pve-1", "--exec", "--", "terraform", "apply"]).unwrap();
        assert_eq!(args.target.as_deref(), Some("pve-1"));
        assert_eq!(args.exec.as_deref(), Some(""));
        assert_eq!(args.args, ["terraform", "apply"]);
        let args = parse(&["pve-1", "--listen-port", "0", "--exec", "--", "curl", "-s"]).unwrap();
        assert_eq!(args.exec.as_deref(), Some(""));
        assert_eq!(args.args, ["curl", "-s"]);
    }
}
