//! TEMPORARY stub until the policy CLI lands.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    Check { file: std::path::PathBuf },
}
pub fn run(_cmd: PolicyCommand) -> anyhow::Result<i32> {
    anyhow::bail!("not yet")
}
