use clap::Parser;
use mjpegd::cli::{run_server, Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    mjpegd::logging::init(cli.log_format, std::env::var("MJPEGD_LOG").ok());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            mjpegd::logging::fatal(&format_args!("cannot start the runtime: {e}"));
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
        Some(Command::Completions { shell }) => mjpegd::manual::completions(shell),
        Some(Command::Man) => mjpegd::manual::man_page(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            mjpegd::logging::fatal(&e);
            ExitCode::FAILURE
        }
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
