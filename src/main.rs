//! `portcullis`: one binary whose subcommands are the controller and worker daemons, the
//! all-in-one `dev` mode, and the client. Built without its default `server` feature it is
//! the client alone.
#![forbid(unsafe_code)]

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Exactly one rustls crypto provider for the whole process, installed before anything
    // builds a TLS config: the dependency tree could otherwise offer two and rustls would
    // refuse to pick.
    if let Err(err) = cli::tls::install_crypto_provider() {
        eprintln!("error: {err:#}");
        return std::process::ExitCode::from(cli::exit::FAILURE);
    }
    // A Tab in a shell with `portcullis completions` loaded: answer it and exit.
    cli::completions::complete_from_env();
    let args = cli::Cli::parse();
    // Before any thread exists (the runtime below starts them): the master key leaves the
    // environment; a controller daemon re-executes itself without it. The client-only build
    // has no command that reads it.
    #[cfg(feature = "server")]
    let master_key = match cli::master_key_env::take(args.command.is_controller_daemon()) {
        Ok(key) => key,
        Err(err) => {
            eprintln!("error: {err:#}");
            return std::process::ExitCode::from(cli::exit::FAILURE);
        }
    };
    #[cfg(not(feature = "server"))]
    let master_key = None;
    cli::init_tracing(&args.log);
    let mut builder = if args.command.single_threaded() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::from(cli::exit::FAILURE);
        }
    };
    // The one place an error becomes an exit status (docs/cli.md lists them).
    match runtime.block_on(cli::run(args, master_key)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(err) => {
            // Errors may quote the controller's answers, and those may quote names from the
            // identity provider or the store: escaped so they cannot drive the terminal.
            eprintln!(
                "error: {}",
                portcullis_proto::text::escaped(format_args!("{err:#}"))
            );
            std::process::ExitCode::from(cli::exit::code_of(&err))
        }
    }
}
