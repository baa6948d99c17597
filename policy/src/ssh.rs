//! SSH inside a session: how the user reaches the target (`ssh_mode`) and, in gateway mode,
//! which SSH channels a role may open (`ssh = { shell = true, ... }`), decided per channel by
//! [`decide_channel`] without I/O.
//!
//! In gateway mode the worker terminates the user's SSH connection and opens its own to the
//! target with a credential the user never holds; every channel the user asks for is checked
//! here first. A `direct-tcpip` channel (`ssh -L`, `-W`, `-J`) to the target's own loopback is
//! relayed on the upstream connection; any other destination is not decided here at all: the
//! controller resolves it once and runs the whole matrix for it ([`ChannelVerdict::Vet`]).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// How a session to an SSH target is carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SshMode {
    /// The user gets a short-lived certificate; OpenSSH runs end to end through the tunnel.
    #[default]
    Certificate,
    /// The worker terminates SSH, checks every channel, and logs into the target with a key
    /// and certificate that never leave it.
    Gateway,
}

impl SshMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SshMode::Certificate => "certificate",
            SshMode::Gateway => "gateway",
        }
    }

    /// The stricter of two modes: a zone, role or grant that requires the gateway wins.
    pub fn strictest(self, other: SshMode) -> SshMode {
        if self == SshMode::Gateway || other == SshMode::Gateway {
            SshMode::Gateway
        } else {
            SshMode::Certificate
        }
    }
}

/// The SSH channel rights of a role in gateway mode. Unset fields take the safe defaults:
/// interactive use, commands and SFTP allowed; every kind of forwarding refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshRights {
    /// A `session` channel with a shell (and the pty it usually asks for).
    pub shell: bool,
    /// A `session` channel running one command (`ssh host CMD`, scp, rsync, Ansible).
    pub exec: bool,
    /// The `sftp` subsystem (sftp, scp of OpenSSH 9+).
    pub sftp: bool,
    /// `direct-tcpip` channels: `ssh -L`, `-W`, `-J`, VS Code's forwards.
    pub forward_local: bool,
    /// `tcpip-forward` requests: `ssh -R`.
    pub forward_remote: bool,
    /// Agent forwarding (`ssh -A`).
    pub agent: bool,
    /// X11 forwarding (`ssh -X`).
    pub x11: bool,
}

impl Default for SshRights {
    fn default() -> Self {
        SshRights {
            shell: true,
            exec: true,
            sftp: true,
            forward_local: false,
            forward_remote: false,
            agent: false,
            x11: false,
        }
    }
}

impl SshRights {
    /// No right at all: the identity of [`SshRights::union`].
    pub const NONE: SshRights = SshRights {
        shell: false,
        exec: false,
        sftp: false,
        forward_local: false,
        forward_remote: false,
        agent: false,
        x11: false,
    };

    /// What either grants: several granting roles give the most generous of each right, as
    /// their other constraints do.
    pub fn union(self, other: SshRights) -> SshRights {
        SshRights {
            shell: self.shell || other.shell,
            exec: self.exec || other.exec,
            sftp: self.sftp || other.sftp,
            forward_local: self.forward_local || other.forward_local,
            forward_remote: self.forward_remote || other.forward_remote,
            agent: self.agent || other.agent,
            x11: self.x11 || other.x11,
        }
    }

    /// The names of the rights granted, in the file format's order (for `explain` and the
    /// exports).
    pub fn granted(self) -> impl Iterator<Item = &'static str> {
        [
            (self.shell, "shell"),
            (self.exec, "exec"),
            (self.sftp, "sftp"),
            (self.forward_local, "forward_local"),
            (self.forward_remote, "forward_remote"),
            (self.agent, "agent"),
            (self.x11, "x11"),
        ]
        .into_iter()
        .filter_map(|(granted, name)| granted.then_some(name))
    }

    /// `shell, exec, sftp`, or `none`.
    pub fn describe(self) -> String {
        let names: Vec<&str> = self.granted().collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }
}

/// How a session to an SSH target runs, as the policy decided it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshAccess {
    pub mode: SshMode,
    /// The channels allowed in gateway mode.
    pub rights: SshRights,
}

/// What the user's SSH client asks the gateway for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelRequest<'a> {
    /// `shell` on a session channel.
    Shell,
    /// `exec` on a session channel.
    Exec,
    /// `pty-req`: allowed wherever a shell or a command is.
    Pty,
    /// `subsystem` on a session channel (`sftp`, or anything else).
    Subsystem(&'a str),
    /// `env`: passed on (the target's `AcceptEnv` decides) wherever a shell or command is.
    Env,
    /// A `direct-tcpip` channel to `host:port` as the client wrote it.
    DirectTcpip { host: &'a str, port: u32 },
    /// A `tcpip-forward` global request (`ssh -R`).
    TcpipForward,
    /// `auth-agent-req@openssh.com` (`ssh -A`).
    Agent,
    /// `x11-req` (`ssh -X`).
    X11,
    /// `streamlocal-forward@openssh.com` or `direct-streamlocal@openssh.com` (Unix sockets).
    StreamLocal,
    /// Any other channel type or request, by its name.
    Other(&'a str),
}

impl ChannelRequest<'_> {
    /// The SSH protocol's name for what was asked (for audit events).
    pub fn kind(&self) -> &str {
        match self {
            ChannelRequest::Shell => "shell",
            ChannelRequest::Exec => "exec",
            ChannelRequest::Pty => "pty-req",
            ChannelRequest::Subsystem(_) => "subsystem",
            ChannelRequest::Env => "env",
            ChannelRequest::DirectTcpip { .. } => "direct-tcpip",
            ChannelRequest::TcpipForward => "tcpip-forward",
            ChannelRequest::Agent => "auth-agent-req@openssh.com",
            ChannelRequest::X11 => "x11-req",
            ChannelRequest::StreamLocal => "streamlocal",
            ChannelRequest::Other(name) => name,
        }
    }
}

/// The answer for one channel or request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelVerdict {
    /// Passed on to the target as asked.
    Allow,
    /// A `direct-tcpip` to the target's own loopback: relayed as a `direct-tcpip` channel on
    /// the upstream SSH connection, to `host:port` as given (`localhost` or the address).
    AllowOnTargetLoopback,
    /// A `direct-tcpip` to anywhere else: only the controller may allow it, after resolving
    /// the name once and running the whole policy (source zone, broker to destination, the
    /// role) as a new session of the user. The worker dials only the address it returns.
    Vet,
    /// Refused: `right` names the `ssh` right of the role that would allow it, or why
    /// nothing could.
    Deny { right: &'static str },
}

/// Decides one channel or request against the session's rights. Pure: the gateway calls it
/// for every channel open and every channel or global request, before anything reaches the
/// target.
pub fn decide_channel(rights: &SshRights, request: &ChannelRequest<'_>) -> ChannelVerdict {
    let allow_if = |granted: bool, right: &'static str| {
        if granted {
            ChannelVerdict::Allow
        } else {
            ChannelVerdict::Deny { right }
        }
    };
    match request {
        ChannelRequest::Shell => allow_if(rights.shell, "shell"),
        ChannelRequest::Exec => allow_if(rights.exec, "exec"),
        ChannelRequest::Pty | ChannelRequest::Env => allow_if(rights.shell || rights.exec, "shell"),
        ChannelRequest::Subsystem(name) if *name == "sftp" => allow_if(rights.sftp, "sftp"),
        ChannelRequest::Subsystem(_) => ChannelVerdict::Deny {
            right: "subsystem (only sftp is known)",
        },
        ChannelRequest::DirectTcpip { host, port } => {
            if !rights.forward_local {
                ChannelVerdict::Deny {
                    right: "forward_local",
                }
            } else if *port == 0 || *port > u32::from(u16::MAX) {
                ChannelVerdict::Deny {
                    right: "forward_local (no such port)",
                }
            } else if is_loopback_destination(host) {
                ChannelVerdict::AllowOnTargetLoopback
            } else {
                ChannelVerdict::Vet
            }
        }
        ChannelRequest::TcpipForward => allow_if(rights.forward_remote, "forward_remote"),
        ChannelRequest::Agent => allow_if(rights.agent, "agent"),
        ChannelRequest::X11 => allow_if(rights.x11, "x11"),
        ChannelRequest::StreamLocal => ChannelVerdict::Deny {
            right: "streamlocal (never granted)",
        },
        ChannelRequest::Other(_) => ChannelVerdict::Deny {
            right: "unknown request",
        },
    }
}

/// Whether a `direct-tcpip` destination names the target's own loopback: `localhost`
/// (exactly, in any case), an address in 127.0.0.0/8, or `::1`. Anything else, including
/// names that merely start with `localhost`, is a destination the controller must vet.
pub fn is_loopback_destination(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => v6.is_loopback(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_allow_interactive_use_commands_and_sftp_and_no_forwarding() {
        let rights = SshRights::default();
        assert_eq!(
            decide_channel(&rights, &ChannelRequest::Shell),
            ChannelVerdict::Allow
        );
        assert_eq!(
            decide_channel(&rights, &ChannelRequest::Exec),
            ChannelVerdict::Allow
        );
        assert_eq!(
            decide_channel(&rights, &ChannelRequest::Subsystem("sftp")),
            ChannelVerdict::Allow
        );
        for denied in [
            ChannelRequest::DirectTcpip {
                host: "localhost",
                port: 8080,
            },
            ChannelRequest::TcpipForward,
            ChannelRequest::Agent,
            ChannelRequest::X11,
            ChannelRequest::StreamLocal,
            ChannelRequest::Subsystem("netconf"),
            ChannelRequest::Other("keepalive@example.com"),
        ] {
            assert!(
                matches!(
                    decide_channel(&rights, &denied),
                    ChannelVerdict::Deny { .. }
                ),
                "{denied:?}"
            );
        }
    }

    #[test]
    fn forwards_to_the_targets_loopback_are_relayed_and_others_go_to_the_controller() {
        let rights = SshRights {
            forward_local: true,
            ..SshRights::default()
        };
        for host in [
            "localhost",
            "LocalHost",
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "[::1]",
        ] {
            assert_eq!(
                decide_channel(&rights, &ChannelRequest::DirectTcpip { host, port: 22 }),
                ChannelVerdict::AllowOnTargetLoopback,
                "{host}"
            );
        }
        for host in [
            "localhost.evil.example",
            "db-01",
            "10.0.0.5",
            "0.0.0.0",
            "::",
            "128.0.0.1",
            "",
        ] {
            assert_eq!(
                decide_channel(&rights, &ChannelRequest::DirectTcpip { host, port: 22 }),
                ChannelVerdict::Vet,
                "{host}"
            );
        }
        assert!(matches!(
            decide_channel(
                &rights,
                &ChannelRequest::DirectTcpip {
                    host: "localhost",
                    port: 70000
                }
            ),
            ChannelVerdict::Deny { .. }
        ));
    }

    #[test]
    fn a_pty_follows_shell_or_exec_and_the_union_is_the_most_generous() {
        let none = SshRights::NONE;
        assert_eq!(
            decide_channel(&none, &ChannelRequest::Pty),
            ChannelVerdict::Deny { right: "shell" }
        );
        let exec_only = SshRights {
            exec: true,
            ..SshRights::NONE
        };
        assert_eq!(
            decide_channel(&exec_only, &ChannelRequest::Pty),
            ChannelVerdict::Allow
        );
        let agent = SshRights {
            agent: true,
            ..SshRights::NONE
        };
        let both = exec_only.union(agent);
        assert!(both.exec && both.agent && !both.shell && !both.forward_remote);
        assert_eq!(
            SshMode::Certificate.strictest(SshMode::Gateway),
            SshMode::Gateway
        );
        assert_eq!(
            SshMode::Certificate.strictest(SshMode::Certificate),
            SshMode::Certificate
        );
    }

    #[test]
    fn rights_parse_with_defaults_and_refuse_unknown_names() {
        let rights: SshRights = toml::from_str("forward_local = true").unwrap();
        assert!(rights.forward_local && rights.shell && !rights.agent);
        let err = toml::from_str::<SshRights>("forward_everything = true").unwrap_err();
        assert!(err.to_string().contains("forward_everything"), "{err}");
    }
}
