//! Logging: human-readable by default, one JSON object per line with `MORPHEUS_LOG_FORMAT=json`.
//! `RUST_LOG` filters as usual (default `info`).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{DefaultFields, Format};
use tracing_subscriber::fmt::{MakeWriter, SubscriberBuilder};

use crate::configuration::LogFormat;

/// `to_stderr`: for the commands whose output is their stdout (`config`, `admin`).
pub fn init(format: LogFormat, to_stderr: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if to_stderr {
        install(builder.with_writer(std::io::stderr), format);
    } else {
        install(builder, format);
    }
}

fn install<W>(builder: SubscriberBuilder<DefaultFields, Format, EnvFilter, W>, format: LogFormat)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // `try_init`: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
