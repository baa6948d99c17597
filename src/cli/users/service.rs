//! `portcullis users add-service|revoke-key`: service accounts over the API.
//!
//! CONTRACT(issue 21): the service-accounts helper builds this.

use super::UsersCommand;

pub(super) async fn run(_cmd: UsersCommand) -> anyhow::Result<i32> {
    anyhow::bail!("service accounts are not built yet")
}
