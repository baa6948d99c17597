//! `portcullis connect postgres TARGET [-- PSQL-ARGS]`: psql through a brokered session, as
//! the database user Vault leased to the session.
//!
//! This is `connect TARGET --exec psql` with psql's environment filled in: `PGHOST` and
//! `PGPORT` name the session's local listener on 127.0.0.1, `PGUSER` and `PGPASSWORD` come
//! from the session's leased secret (its `username` and `password` fields, fetched from the
//! controller, audited, held in memory only, never on psql's command line or on disk), and
//! `PGDATABASE` (default `postgres`), `PGSSLMODE` from the flags. psql's exit ends the session, which revokes the
//! database user, and its status is the command's.

use std::ffi::OsString;

use anyhow::Context as _;
use clap::Parser as _;

use super::args::ConnectArgs;
use crate::cli::http::ClientArgs;

const EXAMPLES: &str = "\
In a deployment:
  # db: a target whose vault_secrets lease database credentials (docs/secrets.md);
  # `portcullis dev` has no Vault, so none of its targets has any.
  portcullis connect postgres db
  portcullis connect postgres db --dbname app -- -c 'select current_user'
  portcullis connect postgres db --secret 1 --sslmode require -- -f migrate.sql
  portcullis connect postgres db --client pgcli

psql gets PGHOST=127.0.0.1, PGPORT (the session's local port), PGUSER and PGPASSWORD from
the session's leased secret (fields username and password), PGDATABASE from --dbname (else
your own PGDATABASE, else postgres) and PGSSLMODE from --sslmode (TLS, if used, runs end to
end between psql and the database). The secret is read from the controller (each read
audited) and lives only in psql's environment. When psql exits the session ends and Vault
drops the database user.
PSQL-ARGS may use {{host}}, {{port}} and {{addr}}, never a secret.";

/// The database when neither `--dbname` nor `PGDATABASE` names one.
const DEFAULT_DATABASE: &str = "postgres";

/// Run psql through a brokered session, logged in with the database credentials Vault
/// leased to the session.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = EXAMPLES)]
pub(crate) struct PostgresArgs {
    /// The target's id or name.
    pub target: String,
    /// The database (PGDATABASE); by default your PGDATABASE, else `postgres` (psql's own
    /// default, the user's name, does not exist for a user leased for one session).
    #[arg(long, short = 'd')]
    pub dbname: Option<String>,
    /// PGSSLMODE for psql; by default psql's own (prefer).
    #[arg(long, value_parser = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"])]
    pub sslmode: Option<String>,
    /// Which of the session's leased secrets to log in with, by its place in the target's
    /// vault_secrets (from 0); by default the one with a username and a password.
    #[arg(long, value_name = "N")]
    pub secret: Option<usize>,
    /// The client to run instead of psql (it gets the same environment).
    #[arg(long, value_name = "PATH", default_value = "psql")]
    pub client: String,
    /// Listen on 127.0.0.1:PORT instead of a free port.
    #[arg(long, value_name = "PORT")]
    pub listen_port: Option<u16>,
    /// Arguments for psql, after `--`.
    #[arg(last = true, value_name = "PSQL-ARGS")]
    pub psql_args: Vec<String>,
    #[command(flatten)]
    pub connection: ClientArgs,
}

/// The `connect` arguments that run the client: `--exec CLIENT --env PG...=... -- ARGS`.
pub(super) fn connect_args(pg: PostgresArgs) -> anyhow::Result<ConnectArgs> {
    let mut argv: Vec<OsString> = vec!["connect".into(), pg.target.clone().into()];
    if let Some(port) = pg.listen_port {
        argv.extend(["--listen-port".into(), port.to_string().into()]);
    }
    let inherited_db = std::env::var_os("PGDATABASE").is_some();
    for (name, value) in environment(&pg, inherited_db) {
        argv.extend(["--env".into(), format!("{name}={value}").into()]);
    }
    argv.extend(["--exec".into(), pg.client.clone().into(), "--".into()]);
    argv.extend(pg.psql_args.iter().map(OsString::from));
    let mut args = Wrapper::try_parse_from(argv)
        .context("internal: connect postgres built arguments connect refuses")?
        .args;
    args.client = pg.connection;
    Ok(args)
}

/// psql's variables as `--env` templates. Without `--dbname` and without a `PGDATABASE` of
/// the user's own, the database is `postgres`: psql's default, the user's name, never exists
/// for a user Vault made for one session.
fn environment(pg: &PostgresArgs, inherited_db: bool) -> Vec<(&'static str, String)> {
    let secret = |field: &str| match pg.secret {
        Some(n) => format!("{{{{secret.{n}.{field}}}}}"),
        None => format!("{{{{secret.{field}}}}}"),
    };
    let mut env = vec![
        ("PGHOST", "{{host}}".to_owned()),
        ("PGPORT", "{{port}}".to_owned()),
        ("PGUSER", secret("username")),
        ("PGPASSWORD", secret("password")),
    ];
    match &pg.dbname {
        Some(db) => env.push(("PGDATABASE", db.clone())),
        None if !inherited_db => env.push(("PGDATABASE", DEFAULT_DATABASE.to_owned())),
        None => {}
    }
    if let Some(mode) = &pg.sslmode {
        env.push(("PGSSLMODE", mode.clone()));
    }
    env
}

#[derive(clap::Parser, Debug)]
struct Wrapper {
    #[command(flatten)]
    args: ConnectArgs,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn pg(args: &[&str]) -> PostgresArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            pg: PostgresArgs,
        }
        Cli::try_parse_from(std::iter::once("postgres").chain(args.iter().copied()))
            .unwrap()
            .pg
    }

    #[test]
    fn psql_runs_as_an_exec_with_the_leased_login_in_its_environment() {
        let args = connect_args(pg(&["db", "--dbname", "app", "--", "-tAc", "select 1"])).unwrap();
        assert_eq!(args.target.as_deref(), Some("db"));
        assert_eq!(args.exec.as_deref(), Some("psql"));
        assert_eq!(args.args, ["-tAc", "select 1"]);
        let names: Vec<&str> = args.env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"]
        );
        assert!(args.env[3].value.uses_secrets());
        assert!(!args.env[4].value.uses_secrets());

        let args = connect_args(pg(&[
            "db",
            "--secret",
            "1",
            "--sslmode",
            "require",
            "--client",
            "pgcli",
            "--listen-port",
            "0",
        ]))
        .unwrap();
        assert_eq!(args.exec.as_deref(), Some("pgcli"));
        assert_eq!(args.listen_port, Some(0));
        let pgssl = args.env.iter().find(|e| e.name == "PGSSLMODE").unwrap();
        assert_eq!(
            pgssl.value,
            super::super::template::Template::parse("require").unwrap()
        );
        assert_eq!(
            environment(&pg(&["db", "--secret", "1"]), false)[3].1,
            "{{secret.1.password}}"
        );
        // The database: --dbname, else the user's PGDATABASE (inherited), else postgres.
        let db = |args: &[&str], inherited: bool| {
            environment(&pg(args), inherited)
                .into_iter()
                .find(|(n, _)| *n == "PGDATABASE")
                .map(|(_, v)| v)
        };
        assert_eq!(db(&["db"], false).as_deref(), Some("postgres"));
        assert_eq!(db(&["db"], true), None);
        assert_eq!(db(&["db", "-d", "app"], true).as_deref(), Some("app"));
        assert!(
            Wrapper::try_parse_from(["connect", "db", "--env", "X=1"]).is_err(),
            "--env needs --exec"
        );
    }

    #[test]
    fn an_unknown_sslmode_is_refused() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            pg: PostgresArgs,
        }
        assert!(Cli::try_parse_from(["postgres", "db", "--sslmode", "maybe"]).is_err());
    }
}
