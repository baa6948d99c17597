//! Shared test harness: real processes and real peers on 127.0.0.1, ports picked at run time.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

pub mod client;
pub mod cluster;
pub mod dev;
pub mod netns;
pub mod pg;
pub mod raw;
pub mod rsyslog;
pub mod sshd;
pub mod vault;
pub mod wait;
