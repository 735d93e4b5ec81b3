//! The `strata` binary: see `strata --help`.

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = strata::cli::Cli::parse();
    if !matches!(cli.cmd, strata::cli::Cmd::Serve { .. }) {
        // A client piped into `head` should stop quietly when the pipe
        // closes, as command-line tools do, not panic on the failed print.
        // The server keeps Rust's default (ignored), so a closed socket
        // is an error it handles.
        // SAFETY: restoring the default disposition of one signal before any
        // thread starts; no handler runs.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // openraft warns on every failed heartbeat to a dead peer, ten times a
    // second; the failure detector reports state changes instead. Name
    // openraft in STRATA_LOG to see its messages.
    let mut filter = std::env::var("STRATA_LOG").unwrap_or_else(|_| "info".into());
    if !filter.contains("openraft") {
        filter.push_str(",openraft=error");
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info,openraft=error")))
        .with_writer(std::io::stderr);
    match cli.log_format {
        strata::cli::LogFormat::Json => logs.json().with_current_span(false).init(),
        // Colour only for a person at a terminal, not in files or journals.
        strata::cli::LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(strata::cli::run(cli));
    // Blocking work still running (a write past the shutdown grace) must not
    // hold the exit: what it had not committed was never acknowledged.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    if let Err(e) = result {
        // One line, whatever the chain: callers grep it, people read it.
        let mut msg = e.to_string();
        for cause in e.chain().skip(1) {
            msg.push_str(": ");
            msg.push_str(&cause.to_string());
        }
        eprintln!("error: {}", msg.replace('\n', " "));
        std::process::exit(1);
    }
}
