use clap::Parser;
use mjpegd::cli::{run_server, Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(std::env::var("MJPEGD_LOG").ok()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mjpegd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        None => runtime.block_on(run_server(cli.serve)),
        Some(Command::Bench(args)) => runtime.block_on(mjpegd::bench::run(args)),
        Some(Command::HashPassword) => hash_password(),
        Some(Command::CheckConfig { file }) => mjpegd::cli::check_config(&cli.serve, &file),
        Some(Command::Devices { paths }) => {
            print!("{}", mjpegd::source::v4l2::list_devices(&paths));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mjpegd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The log filter: MJPEGD_LOG (default `info`), with rustls held at `error` unless MJPEGD_LOG names it.
/// rustls warns at every client hello it finds odd (an IP address as server name, which some clients send):
/// log lines any client could make, one per connection. Real TLS failures reach the log through mjpegd's
/// own handshake errors (at debug) and counters (`/state` rejected.tls_handshakes).
fn log_filter(env: Option<String>) -> tracing_subscriber::EnvFilter {
    let spec = env.unwrap_or_else(|| "info".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if spec.contains("rustls") {
        return filter;
    }
    match "rustls=error".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// `mjpegd hash-password`: one line of standard input in, its bcrypt hash out.
fn hash_password() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!password.is_empty(), "no password on standard input");
    println!("{}", mjpegd::http::auth::hash_password(password)?);
    Ok(())
}
