//! `portcullis users add|list|show|disable|reset`: local users over the API.
//!
//! CONTRACT(issue 21): the users-API helper builds this.

use super::UsersCommand;

pub(super) async fn run(_cmd: UsersCommand) -> anyhow::Result<i32> {
    anyhow::bail!("local user administration over the API is not built yet")
}
