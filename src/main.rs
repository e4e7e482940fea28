//! `morpheus-gateway`: serve the gateway (default) or apply database migrations.

use clap::Parser;
use morpheus_gateway::cli::{Cli, Command};
use morpheus_gateway::configuration::Settings;
use morpheus_gateway::{startup, telemetry};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(&cli)?;
    telemetry::init(settings.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                startup::Application::build(settings)
                    .await?
                    .run_until_stopped()
                    .await
            }
            Command::Migrate => startup::migrate(&settings).await,
            Command::ResealWalletKeys => startup::reseal_wallet_keys(&settings).await.map(|_| ()),
        }
    })
}
