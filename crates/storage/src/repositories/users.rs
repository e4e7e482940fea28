use anyhow::Context;
use async_trait::async_trait;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use morpheus_domain::ports::{InsertUserError, RevokedRefreshTokens, UserRepository};
use morpheus_domain::{
    AccountDeletion, Email, LimitMultiplier, NewUser, PasswordHash, SessionState, User, UserId,
    UserName,
};

use super::{is_unique_violation, to_u64};
use crate::connection::AnyConnection;
use crate::database::Database;
use crate::schema::{
    api_keys, automation_settings, delegations, sessions, usage_records, users, wallet_keys,
};

#[derive(Queryable, Selectable)]
#[diesel(table_name = users)]
struct UserRow {
    id: i64,
    email: String,
    name: Option<String>,
    password_hash: String,
    is_active: bool,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    token_generation: i64,
    limit_multiplier: i64,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
struct NewUserRow {
    id: i64,
    email: String,
    email_skeleton: Option<String>,
    name: Option<String>,
    password_hash: String,
    is_active: bool,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            id: UserId(row.id),
            email: Email::from_trusted(row.email),
            name: row.name.map(UserName::from_trusted),
            password_hash: PasswordHash(row.password_hash),
            is_active: row.is_active,
            token_generation: row.token_generation,
            limit_multiplier: multiplier(row.limit_multiplier),
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
        }
    }
}

/// The stored multiplier; only [`LimitMultiplier`]s are written, so another value is a row
/// changed by hand, read as the limits as written rather than refusing the user.
pub(super) fn multiplier(hundredths: i64) -> LimitMultiplier {
    u32::try_from(hundredths)
        .ok()
        .and_then(|h| LimitMultiplier::from_hundredths(h).ok())
        .unwrap_or_else(|| {
            tracing::warn!(
                hundredths,
                "a user's stored limit multiplier is out of range; using 1"
            );
            LimitMultiplier::ONE
        })
}

impl From<NewUser> for NewUserRow {
    fn from(user: NewUser) -> Self {
        let created_at = user.created_at.naive_utc();
        NewUserRow {
            id: user.id.0,
            email_skeleton: Some(user.email.skeleton().as_str().to_owned()),
            email: user.email.as_str().to_owned(),
            name: user.name.map(|name| name.as_str().to_owned()),
            password_hash: user.password_hash.0,
            is_active: true,
            created_at,
            updated_at: created_at,
        }
    }
}

/// Fills in the skeleton of accounts made before the column existed (run after the
/// migrations, at every start: after the first, only rows that clash remain, found through
/// the index). Returns how many could not take theirs because an older look-alike account
/// already has it; those keep logging in by their exact address.
pub(crate) fn fill_email_skeletons(conn: &mut AnyConnection) -> anyhow::Result<usize> {
    let missing: Vec<(i64, String)> = users::table
        .filter(users::email_skeleton.is_null())
        .order((users::created_at.asc(), users::id.asc()))
        .select((users::id, users::email))
        .load(conn)
        .context("reading accounts without an email skeleton")?;
    let mut clashing = 0;
    for (id, email) in missing {
        let skeleton = Email::from_trusted(email).skeleton().as_str().to_owned();
        match diesel::update(users::table.find(id))
            .set(users::email_skeleton.eq(skeleton))
            .execute(conn)
        {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => clashing += 1,
            Err(e) => return Err(anyhow::Error::new(e).context("storing an email skeleton")),
        }
    }
    Ok(clashing)
}

fn load_user(conn: &mut AnyConnection, id: i64) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
        .optional()
        .map(|row| row.map(User::from))
}

#[async_trait]
impl UserRepository for Database {
    #[tracing::instrument(skip_all, fields(user_id = %user.id))]
    async fn insert_user(&self, user: NewUser) -> Result<User, InsertUserError> {
        let row = NewUserRow::from(user);
        self.run(move |conn| {
            if let Err(error) = diesel::insert_into(users::table).values(&row).execute(conn) {
                if !is_unique_violation(&error) {
                    return Err(anyhow::Error::new(error).context("inserting a user").into());
                }
                // The email, its skeleton and the id are all unique. Asking which one clashed
                // works the same on both backends, unlike parsing their constraint messages.
                let email_taken = diesel::select(diesel::dsl::exists(
                    users::table.filter(
                        users::email
                            .eq(&row.email)
                            .or(users::email_skeleton.eq(&row.email_skeleton)),
                    ),
                ))
                .get_result::<bool>(conn)
                .context("checking which unique key a new user clashed with")?;
                return Err(if email_taken {
                    InsertUserError::DuplicateEmail
                } else {
                    InsertUserError::IdTaken
                });
            }
            load_user(conn, row.id)
                .context("reading back a new user")?
                .context("a new user vanished before it could be read back")
                .map_err(InsertUserError::from)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %id))]
    async fn find_user(&self, id: UserId) -> anyhow::Result<Option<User>> {
        self.run(move |conn| load_user(conn, id.0).context("looking up a user by id"))
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn find_user_by_email(&self, email: &Email) -> anyhow::Result<Option<User>> {
        let skeleton = email.skeleton().as_str().to_owned();
        let email = email.as_str().to_owned();
        self.run(move |conn| {
            // Both columns are unique, so at most two rows: the exact address wins over a
            // look-alike (only accounts older than the skeleton column can be both).
            let rows: Vec<UserRow> = users::table
                .filter(
                    users::email
                        .eq(&email)
                        .or(users::email_skeleton.eq(skeleton)),
                )
                .order((users::created_at.asc(), users::id.asc()))
                .select(UserRow::as_select())
                .load(conn)
                .context("looking up a user by email")?;
            let exact = rows.iter().position(|row| row.email == email);
            Ok(rows.into_iter().nth(exact.unwrap_or(0)).map(User::from))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %id))]
    async fn update_password_hash(&self, id: UserId, hash: PasswordHash) -> anyhow::Result<()> {
        let now = Utc::now().naive_utc();
        self.run(move |conn| {
            diesel::update(users::table.find(id.0))
                .set((users::password_hash.eq(hash.0), users::updated_at.eq(now)))
                .execute(conn)
                .context("updating a password hash")?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %id))]
    async fn change_password(&self, id: UserId, hash: PasswordHash) -> anyhow::Result<bool> {
        let now = Utc::now().naive_utc();
        self.run(move |conn| {
            conn.write_transaction(|c| {
                let updated = diesel::update(users::table.find(id.0))
                    .set((users::password_hash.eq(hash.0), users::updated_at.eq(now)))
                    .execute(c)?;
                if updated == 0 {
                    return Ok(false);
                }
                super::refresh_tokens::end_sign_ins(c, id.0, &RevokedRefreshTokens::All)?;
                Ok::<_, diesel::result::Error>(true)
            })
            .context("changing a password")
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %id))]
    async fn delete_user(&self, id: UserId) -> anyhow::Result<Option<AccountDeletion>> {
        let id = id.0;
        self.run(move |conn| {
            conn.write_transaction(|c| {
                // First, so that a batch of usage records being written for this user commits
                // before the records are pseudonymised below (it locks the user too).
                lock_for_deletion(c, id)?;
                // Deleting the owned rows one table at a time counts exactly what went; the
                // user's deletion cascades to the rest (refresh tokens). The user's own
                // sessions join the shared pool: they are paid for on chain, so they serve
                // other requests until their end, when the sweep closes them and the stake
                // comes back.
                let pooled = diesel::update(
                    sessions::table
                        .filter(sessions::user_id.eq(id))
                        .filter(sessions::state.eq(SessionState::Active.as_str()))
                        .filter(sessions::pooled.eq(false)),
                )
                .set(sessions::pooled.eq(true))
                .execute(c)?;
                // Usage records are the operator's accounting: they stay, as do the sessions
                // they name, under a pseudonym that no longer leads to the user. Not counted:
                // the report lists what the user set up.
                let pseudonym = UserId::pseudonym().0;
                diesel::update(sessions::table.filter(sessions::user_id.eq(id)))
                    .set(sessions::user_id.eq(pseudonym))
                    .execute(c)?;
                diesel::update(usage_records::table.filter(usage_records::user_id.eq(id)))
                    .set(usage_records::user_id.eq(pseudonym))
                    .execute(c)?;
                // Every replica's key cache must forget these keys.
                let prefixes: Vec<String> = api_keys::table
                    .filter(api_keys::user_id.eq(id))
                    .filter(api_keys::is_active.eq(true))
                    .select(api_keys::key_prefix)
                    .load(c)?;
                super::revocations::log_revocations(c, prefixes)?;
                let api_keys =
                    diesel::delete(api_keys::table.filter(api_keys::user_id.eq(id))).execute(c)?;
                let wallet_keys = diesel::delete(wallet_keys::table.find(id)).execute(c)?;
                let automation = diesel::delete(automation_settings::table.find(id)).execute(c)?;
                let delegations =
                    diesel::delete(delegations::table.filter(delegations::user_id.eq(id)))
                        .execute(c)?;
                let users = diesel::delete(users::table.find(id)).execute(c)?;
                // Without the user there were no owned rows either (foreign keys), so
                // nothing is reported; usage records a late batch wrote after an earlier
                // deletion are pseudonymised all the same.
                Ok::<_, diesel::result::Error>((users > 0).then(|| AccountDeletion {
                    sessions: to_u64(pooled),
                    api_keys: to_u64(api_keys),
                    private_key: wallet_keys > 0,
                    automation_settings: automation > 0,
                    delegations: to_u64(delegations),
                }))
            })
            .context("deleting an account")
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn list_users(
        &self,
        email_contains: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Vec<User>> {
        let pattern = email_contains.map(like_pattern);
        self.run(move |conn| {
            let mut query = users::table.into_boxed();
            if let Some(pattern) = pattern {
                query = query.filter(users::email.like(pattern).escape('\\'));
            }
            let rows = query
                .order((users::created_at.desc(), users::id.desc()))
                .limit(i64::from(limit))
                .select(UserRow::as_select())
                .load(conn)
                .context("listing users")?;
            Ok(rows.into_iter().map(User::from).collect())
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %id, active))]
    async fn set_user_active(&self, id: UserId, active: bool) -> anyhow::Result<Option<User>> {
        let (id, now) = (id.0, Utc::now().naive_utc());
        self.run(move |conn| {
            conn.write_transaction(|c| {
                let updated = diesel::update(users::table.find(id))
                    .set((users::is_active.eq(active), users::updated_at.eq(now)))
                    .execute(c)?;
                if updated == 0 {
                    return Ok(None);
                }
                // A disabled user's sign-ins end: enabling them again brings none back.
                if !active {
                    super::refresh_tokens::end_sign_ins(c, id, &RevokedRefreshTokens::All)?;
                }
                // A disabled user's keys are refused and an enabled user's accepted again.
                log_active_keys(c, id)?;
                load_user(c, id)
            })
            .context("enabling or disabling a user")
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %id))]
    async fn set_limit_multiplier(
        &self,
        id: UserId,
        multiplier: LimitMultiplier,
    ) -> anyhow::Result<Option<User>> {
        self.run(move |conn| {
            conn.write_transaction(|c| set_limit_multiplier(c, id.0, multiplier))
                .context("setting a user's limit multiplier")
        })
        .await
    }
}

/// Logs the user's active keys in the revocation log. Every replica's cache holds the owner's
/// state (active, limit multiplier) with each key: the log makes them read it again.
fn log_active_keys(conn: &mut AnyConnection, id: i64) -> QueryResult<()> {
    let prefixes: Vec<String> = api_keys::table
        .filter(api_keys::user_id.eq(id))
        .filter(api_keys::is_active.eq(true))
        .select(api_keys::key_prefix)
        .load(conn)?;
    super::revocations::log_revocations(conn, prefixes)?;
    Ok(())
}

/// Sets the multiplier and logs the user's active keys, so every replica's key cache reads
/// the new share with them.
fn set_limit_multiplier(
    conn: &mut AnyConnection,
    id: i64,
    multiplier: LimitMultiplier,
) -> QueryResult<Option<User>> {
    let now = Utc::now().naive_utc();
    let updated = diesel::update(users::table.find(id))
        .set((
            users::limit_multiplier.eq(i64::from(multiplier.hundredths())),
            users::updated_at.eq(now),
        ))
        .execute(conn)?;
    if updated == 0 {
        return Ok(None);
    }
    log_active_keys(conn, id)?;
    load_user(conn, id)
}

/// Waits for (and then blocks) writes that lock the user's row to know it still exists.
/// SQLite needs nothing here: `BEGIN IMMEDIATE` already admits one writer at a time.
fn lock_for_deletion(conn: &mut AnyConnection, id: i64) -> QueryResult<()> {
    if let AnyConnection::Postgresql(pg) = conn {
        users::table
            .find(id)
            .select(users::id)
            .for_update()
            .first::<i64>(pg)
            .optional()?;
    }
    Ok(())
}

/// `%text%` for LIKE, with the pattern's own `%`, `_` and `\` matched literally. Emails are
/// stored lower-cased, so the text is too.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}
