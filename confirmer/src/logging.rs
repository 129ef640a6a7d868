//! Logs for the confirmer's binaries: `tracing` to stderr, human or JSON, filtered by RUST_LOG
//! (default `info`).

pub fn init(format: &str) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    if format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
}
