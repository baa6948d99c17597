//! The arguments of `portcullis connect http`.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::cli::connect::listen_addr;
use crate::cli::http::ClientArgs;

const EXAMPLES: &str = "\
Examples:
  # The target's web UI on https://localhost:PORT/ (the URL is printed); Ctrl-C ends it.
  # Trust your local CA (CONFIG/portcullis/local-ca/ca.pem, printed too) in the browser once.
  portcullis connect http echo --scheme http --listen-port 0     # Ctrl-C ends it
  portcullis connect http echo --scheme http --json              # Ctrl-C ends it

  # A target named like a subcommand:
  portcullis connect http --target echo --scheme http            # Ctrl-C ends it

In a deployment:
  # The Proxmox VE UI (port 8006: https upstream), opened in the browser; Host: pve.lan:8006.
  portcullis connect http pve-ui --open
  # Its self-signed certificate, pinned by the fingerprint the node's summary shows:
  portcullis connect http pve-ui --target-fingerprint 80:D4:...:F5
  # Grafana behind a name-based virtual host, checked against your own CA:
  portcullis connect http grafana --host-header grafana.lan --target-ca lab-ca.pem
  # For a colleague's browser on the LAN (plain http on that address, a warning, and only
  # the listed clients get in):
  portcullis connect http grafana --listen-addr 192.168.1.10 --listen-port 8080 \\
      --allow 192.168.1.0/24

Requests go over HTTP/1.1 with Host (and Origin and Referer when they name the local URL)
rewritten to what the target expects, and a Location pointing at the target is rewritten
back to the local URL; WebSocket upgrades (the Proxmox console) are passed through. A Proxmox
API target whose sessions get a token is served by `portcullis connect TARGET` instead.

With --json, one JSON object on stdout:
  {\"session_id\", \"target\", \"address\", \"port\", \"url\", \"host\" (the Host sent),
   \"upstream\" (http or https), \"expires_at\" (unix seconds), and \"ca_file\" for https}";

/// Serve a web target locally: https://localhost:PORT/ proxied to it over the session.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = EXAMPLES)]
#[command(group(
    clap::ArgGroup::new("trust")
        .args(["target_ca", "target_fingerprint", "insecure_target"])
        .multiple(false)
))]
pub(crate) struct HttpArgs {
    /// The target's id or name.
    #[arg(required_unless_present = "target_flag")]
    pub target: Option<String>,
    /// The target's id or name, for a target named like a subcommand.
    #[arg(long = "target", value_name = "NAME", conflicts_with = "target")]
    pub target_flag: Option<String>,
    /// Open the URL in the browser (xdg-open, open or start); a missing opener is a warning.
    #[arg(long)]
    pub open: bool,
    /// The local port (0 picks a free one).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub listen_port: u16,
    /// Listen on ADDR instead of 127.0.0.1. Any other address than 127.0.0.1 or ::1 is
    /// served as plain http (the local CA certifies only those); one other than loopback
    /// prints a warning and needs --allow.
    #[arg(long, value_name = "ADDR")]
    pub listen_addr: Option<IpAddr>,
    /// With --listen-addr: who may connect (repeatable; a bare address is /32 or /128).
    #[arg(long, value_name = "CIDR", requires = "listen_addr", value_parser = listen_addr::parse_cidr)]
    pub allow: Vec<ipnet::IpNet>,
    /// The Host header the target expects (default: the target's address, e.g.
    /// pve.lan:8006); also the name its certificate is checked for.
    #[arg(long, value_name = "NAME")]
    pub host_header: Option<String>,
    /// How to speak to the target (default: https on ports 8006 and 443, else http).
    #[arg(long, value_enum)]
    pub scheme: Option<Scheme>,
    /// Check an https target's certificate against this CA (PEM) instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub target_ca: Option<PathBuf>,
    /// Accept exactly the https target certificate with this SHA-256 fingerprint (hex, colons
    /// optional; Proxmox shows it in the node's summary).
    #[arg(long, value_name = "SHA256")]
    pub target_fingerprint: Option<String>,
    /// Do not check the https target's certificate at all (prefer --target-fingerprint).
    #[arg(long)]
    pub insecure_target: bool,
    /// Print the URL line as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The scheme spoken to the target.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

impl HttpArgs {
    /// The target, positional or `--target NAME`.
    pub(crate) fn target_name(&self) -> Option<&str> {
        self.target.as_deref().or(self.target_flag.as_deref())
    }
}
