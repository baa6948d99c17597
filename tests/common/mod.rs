//! Shared test harness: real processes and real peers on 127.0.0.1, ports picked at run time.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

pub(crate) mod browser;
pub(crate) mod catalog;
pub(crate) mod chroot;
pub(crate) mod client;
pub(crate) mod cluster;
pub(crate) mod console;
pub(crate) mod dev;
pub(crate) mod gateway;
pub(crate) mod init;
pub(crate) mod netns;
pub(crate) mod oidc;
pub(crate) mod oidc_login;
pub(crate) mod pg;
pub(crate) mod ports;
pub(crate) mod proxmox;
pub(crate) mod raw;
pub(crate) mod recording;
pub(crate) mod rsyslog;
pub(crate) mod sshd;
pub(crate) mod totp;
pub(crate) mod vault;
pub(crate) mod wait;
pub(crate) mod xrdp;
