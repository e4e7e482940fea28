use anyhow::Context;
use async_trait::async_trait;
use diesel::RunQueryDsl;
use morpheus_domain::ports::{HealthProbe, PoolUse};

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

    fn pool_use(&self) -> PoolUse {
        let state = self.pool.state();
        PoolUse {
            connections: state.connections,
            idle: state.idle_connections,
            max: self.pool.max_size(),
        }
    }
}
