use anyhow::Context;
use async_trait::async_trait;
use diesel::RunQueryDsl;
use morpheus_domain::ports::HealthProbe;

use crate::database::Database;

#[async_trait]
impl HealthProbe for Database {
    #[tracing::instrument(skip_all)]
    async fn ping(&self) -> anyhow::Result<()> {
        self.run(|conn| {
            diesel::sql_query("SELECT 1")
                .execute(conn)
                .context("pinging the database")?;
            Ok(())
        })
        .await
    }
}
