//! `morpheus-gateway`: serve the gateway (default), apply database migrations, show the
//! configuration, or administer users, keys and sessions.

use clap::Parser;
use morpheus_gateway::cli::{Cli, Command};
use morpheus_gateway::configuration::{self, effective_json, effective_rows};
use morpheus_gateway::{admin, output, startup, telemetry};

fn main() -> anyhow::Result<()> {
    return_large_blocks_to_the_os();
    let cli = Cli::parse();
    let loaded = match configuration::load(&cli) {
        Ok(loaded) => loaded,
        Err(error) => {
            // One line per invalid setting, nothing else.
            eprintln!("{error}");
            std::process::exit(2);
        }
    };
    let settings = loaded.settings.clone();
    // These commands' output is their stdout: logs go to stderr.
    let prints = matches!(
        cli.command,
        Some(Command::Config { .. } | Command::Admin(_) | Command::Credits { .. })
    );
    let telemetry = telemetry::init(
        settings.log_format,
        prints,
        settings.otlp_endpoint.as_deref(),
    )?;
    for warning in &loaded.warnings {
        if prints {
            eprintln!("warning: {warning}");
        } else {
            tracing::warn!("{warning}");
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // `Ok(false)`: the command found problems (exit status 1).
    let outcome = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                startup::Application::build(settings)
                    .await?
                    .run_until_signalled()
                    .await?;
            }
            Command::Migrate => startup::migrate(&settings).await?,
            Command::ResealWalletKeys => {
                startup::reseal_wallet_keys(&settings).await?;
            }
            Command::Credits { json, command } => {
                let args = admin::AdminArgs {
                    json,
                    command: admin::AdminCommand::Credits(command),
                };
                return admin::print(admin::run(&loaded, args).await?, json);
            }
            Command::Admin(args) => {
                let json = args.json;
                return admin::print(admin::run(&loaded, args).await?, json);
            }
            Command::Config { json } => {
                if json {
                    println!("{:#}", effective_json(&loaded));
                } else {
                    let rows = effective_rows(&loaded);
                    print!("{}", output::table(["SETTING", "VALUE", "FROM"], &rows));
                }
            }
        }
        anyhow::Ok(true)
    });
    drop(runtime);
    // Outside the runtime: the exporter's client blocks.
    telemetry.shutdown();
    if !outcome? {
        std::process::exit(1);
    }
    Ok(())
}

/// glibc serves a freed large block's size from the heap next time (its mmap threshold rises to
/// up to 32 MiB), and heap memory is rarely given back. Each argon2 hash takes 19 MiB, so a few
/// logins on different threads left ~40 MiB resident for good (seen by the benchmark). A fixed
/// threshold keeps blocks of 1 MiB and more in their own mappings, returned when freed.
fn return_large_blocks_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called first thing, before any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
