//! The `strata` binary: see `strata --help`.

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The status a shell shows for a process ended by SIGPIPE.
const BROKEN_PIPE: i32 = 128 + 13;

fn main() {
    let cli = strata::cli::Cli::parse();
    if !matches!(cli.cmd, strata::cli::Cmd::Serve { .. }) {
        // A client piped into `head` stops quietly when the pipe closes, as
        // command-line tools do, instead of panicking on the failed print.
        // SIGPIPE itself stays ignored (Rust's default): HTTP/2 writes to a
        // socket the server closed (a plaintext client on a TLS port) must
        // be an error the client reports, not a silent death.
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info.payload().downcast_ref::<String>().map(String::as_str).unwrap_or("");
            if msg.contains("Broken pipe") {
                std::process::exit(BROKEN_PIPE);
            }
            default(info);
        }));
    }
    // openraft warns on every failed heartbeat to a dead peer, ten times a
    // second; the failure detector reports state changes instead. Name
    // openraft in STRATA_LOG to see its messages.
    let mut filter = std::env::var("STRATA_LOG").unwrap_or_else(|_| "info".into());
    if !filter.contains("openraft") {
        filter.push_str(",openraft=error");
    }
    // s3s logs every refused S3 request as an error; the gateway logs its
    // own failures. Name s3s in STRATA_LOG to see its messages.
    if !filter.contains("s3s") {
        filter.push_str(",s3s=off");
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
        if e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)) {
            std::process::exit(BROKEN_PIPE);
        }
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
