use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use morpheus_domain::ports::AutomationRepository;
use morpheus_domain::{AutomationSettings, AutomationUpdate, SessionDuration, UserId};

use crate::connection::{AnyConnection, on_each_backend};
use crate::database::Database;
use crate::schema::automation_settings;

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = automation_settings)]
struct AutomationRow {
    user_id: i64,
    is_enabled: bool,
    session_duration: i32,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

/// The columns an update may touch; `None` leaves a column as it is.
#[derive(AsChangeset)]
#[diesel(table_name = automation_settings)]
struct AutomationChanges {
    is_enabled: Option<bool>,
    session_duration: Option<i32>,
    updated_at: NaiveDateTime,
}

fn to_column(duration: SessionDuration) -> anyhow::Result<i32> {
    i32::try_from(duration.seconds()).context("session duration does not fit its column")
}

impl TryFrom<&AutomationSettings> for AutomationRow {
    type Error = anyhow::Error;

    fn try_from(settings: &AutomationSettings) -> anyhow::Result<Self> {
        Ok(AutomationRow {
            user_id: settings.user_id.0,
            is_enabled: settings.is_enabled,
            session_duration: to_column(settings.session_duration)?,
            created_at: settings.created_at.naive_utc(),
            updated_at: settings.updated_at.naive_utc(),
        })
    }
}

impl TryFrom<AutomationRow> for AutomationSettings {
    type Error = anyhow::Error;

    fn try_from(row: AutomationRow) -> anyhow::Result<Self> {
        Ok(AutomationSettings {
            user_id: UserId(row.user_id),
            is_enabled: row.is_enabled,
            session_duration: SessionDuration::parse(i64::from(row.session_duration))
                .map_err(|_| anyhow::anyhow!("stored session duration is out of range"))?,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
        })
    }
}

/// Inserts the defaults unless the user already has a row. `ON CONFLICT DO NOTHING` settles a
/// race between two first reads inside the database.
fn insert_if_missing(conn: &mut AnyConnection, defaults: &AutomationRow) -> anyhow::Result<()> {
    on_each_backend!(conn, c => diesel::insert_into(automation_settings::table)
        .values(defaults)
        .on_conflict_do_nothing()
        .execute(c))
    .context("creating default automation settings")?;
    Ok(())
}

fn load(conn: &mut AnyConnection, user: i64) -> anyhow::Result<AutomationSettings> {
    automation_settings::table
        .find(user)
        .select(AutomationRow::as_select())
        .first(conn)
        .context("reading automation settings")?
        .try_into()
}

#[async_trait]
impl AutomationRepository for Database {
    #[tracing::instrument(skip_all, fields(user_id = %defaults.user_id))]
    async fn get_or_create_automation(
        &self,
        defaults: AutomationSettings,
    ) -> anyhow::Result<AutomationSettings> {
        let defaults = AutomationRow::try_from(&defaults)?;
        self.run(move |conn| {
            // Two statements, no transaction: the row, once there, only goes with its user.
            insert_if_missing(conn, &defaults)?;
            load(conn, defaults.user_id)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %defaults.user_id))]
    async fn update_automation(
        &self,
        defaults: AutomationSettings,
        update: AutomationUpdate,
        at: DateTime<Utc>,
    ) -> anyhow::Result<AutomationSettings> {
        let defaults = AutomationRow::try_from(&defaults)?;
        let changes = AutomationChanges {
            is_enabled: update.is_enabled,
            session_duration: update.session_duration.map(to_column).transpose()?,
            updated_at: at.naive_utc(),
        };
        self.run(move |conn| {
            conn.write_transaction(|c| {
                insert_if_missing(c, &defaults)?;
                diesel::update(automation_settings::table.find(defaults.user_id))
                    .set(&changes)
                    .execute(c)
                    .context("updating automation settings")?;
                load(c, defaults.user_id)
            })
        })
        .await
    }
}
