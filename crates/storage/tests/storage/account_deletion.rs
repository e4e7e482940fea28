use chrono::Duration;
use diesel::prelude::*;
use diesel::sql_types::Text;
use morpheus_domain::ports::*;
use morpheus_domain::*;

use morpheus_storage::AnyConnection;

use crate::harness::{TestDb, each_backend, insert_user, now};

/// Gives a user one of everything (two API keys, each with a session, and two delegations,
/// three refresh tokens and three usage records).
async fn populate(t: &TestDb, user: &User, tag: u8) {
    let model = ModelId::parse(&format!("0x{:064x}", 1)).unwrap();
    for n in 0..2u8 {
        let prefix = format!("sk-{tag}{n}xxxx");
        let key =
            t.db.insert_api_key(
                NewApiKey {
                    id: ApiKeyId::random(),
                    user_id: user.id,
                    prefix: KeyPrefix::from_trusted(prefix),
                    digest: ApiKeyDigest(vec![tag, n]),
                    name: None,
                    created_at: now(),
                    policy: morpheus_domain::KeyPolicy::default(),
                },
                morpheus_domain::ports::ApiKeyLimits::NONE,
            )
            .await
            .unwrap();
        t.db.insert_session(SessionRecord {
            id: SessionId::parse(&format!("0x{tag:062x}{n:02x}")).unwrap(),
            api_key_id: key.id,
            user_id: user.id,
            model_id: model.clone(),
            bid_id: None,
            origin: SessionOrigin::Automated,
            state: SessionState::Active,
            opened_at: now(),
            ends_at: now() + Duration::hours(1),
            closed_at: None,
            pooled: false,
        })
        .await
        .unwrap();
        t.db.insert_delegation(
            Delegation {
                id: DelegationId::random(),
                user_id: user.id,
                delegate_address: EthAddress::parse("0x52908400098527886E0F7030069857D2E4169EE7")
                    .unwrap(),
                signed_delegation_data: SignedDelegation::parse(
                    "blob".into(),
                    SignedDelegation::MAX_CHARS,
                )
                .unwrap(),
                expiry: None,
                is_active: true,
                created_at: now(),
            },
            u64::MAX,
        )
        .await
        .unwrap();
    }
    for n in 0..3 {
        t.db.insert_refresh_token(NewRefreshRecord {
            token_id: format!("{tag}-{n}"),
            family_id: format!("family-{tag}"),
            user_id: user.id,
            issued_at: now(),
            expires_at: now() + Duration::days(1),
        })
        .await
        .unwrap();
    }
    let usage = UsageRecord {
        user_id: user.id,
        api_key_id: ApiKeyId::random(),
        model_id: Some(model),
        session_id: None,
        upstream: None,
        usage: None,
        usage_source: None,
        outcome: UsageOutcome::Completed,
        status: 200,
        stream: false,
        latency_ms: 1,
        created_at: now(),
    };
    t.db.insert_usage(vec![usage; 3]).await.unwrap();
    t.db.upsert_wallet_key(user.id, SealedWalletKey(vec![tag; 40]), now())
        .await
        .unwrap();
    let at = now();
    t.db.get_or_create_automation(AutomationSettings {
        user_id: user.id,
        is_enabled: true,
        session_duration: SessionDuration::DEFAULT,
        created_at: at,
        updated_at: at,
    })
    .await
    .unwrap();
}

const OWNED_TABLES: [&str; 6] = [
    "api_keys",
    "refresh_tokens",
    "wallet_keys",
    "delegations",
    "automation_settings",
    "usage_records",
];

fn rows_of(t: &TestDb, user: &User) -> Vec<i64> {
    OWNED_TABLES
        .iter()
        .map(|table| {
            t.count(&format!(
                "SELECT COUNT(*) AS n FROM {table} WHERE user_id = {}",
                user.id
            ))
        })
        .collect()
}

#[derive(QueryableByName)]
struct ForeignKeyProblem {
    #[diesel(sql_type = Text)]
    table: String,
}

#[tokio::test]
async fn deleting_an_account_removes_everything_it_owned_and_says_what() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let bob = insert_user(&t.db, "bob@example.com").await;
        populate(t, &alice, 1).await;
        populate(t, &bob, 2).await;

        let deleted = t.db.delete_user(alice.id).await.unwrap();
        assert_eq!(
            deleted,
            Some(AccountDeletion {
                sessions: 2,
                api_keys: 2,
                private_key: true,
                automation_settings: true,
                delegations: 2,
            })
        );

        assert!(t.db.find_user(alice.id).await.unwrap().is_none());
        assert_eq!(rows_of(t, &alice), [0; 6]);
        assert_eq!(rows_of(t, &bob), [2, 3, 1, 2, 1, 3]);
        // Usage records are the operator's accounting: they stay, under one pseudonym (a
        // negative id) that names no user, with the sessions they refer to.
        let pseudonym =
            UserId(t.count("SELECT MIN(user_id) AS n FROM usage_records WHERE user_id < 0"));
        assert!(pseudonym.is_pseudonym());
        assert_eq!(t.db.list_usage(pseudonym, 10).await.unwrap().len(), 3);
        assert_eq!(
            t.count("SELECT COUNT(DISTINCT user_id) AS n FROM usage_records WHERE user_id < 0"),
            1
        );
        // Sessions are paid for on chain: they stay, in the shared pool, until the sweep
        // closes them after their end; Bob's are untouched.
        let sessions = |user: UserId, state: &str| {
            t.count(&format!(
                "SELECT COUNT(*) AS n FROM sessions WHERE user_id = {user} AND state = '{state}'"
            ))
        };
        assert_eq!(sessions(pseudonym, "active"), 2);
        assert_eq!(
            t.count(&format!(
                "SELECT COUNT(*) AS n FROM sessions WHERE user_id = {pseudonym} AND pooled"
            )),
            2
        );
        assert_eq!(
            sessions(alice.id, "retired") + sessions(alice.id, "active"),
            0
        );
        assert_eq!(sessions(bob.id, "active"), 2);
        let due =
            t.db.sessions_due_for_close(now() + Duration::hours(2), 10)
                .await
                .unwrap();
        assert_eq!(due.iter().filter(|s| s.user_id == pseudonym).count(), 2);
        for table in OWNED_TABLES {
            let orphans = t.count(&format!(
                "SELECT COUNT(*) AS n FROM {table} \
                 WHERE user_id > 0 AND user_id NOT IN (SELECT id FROM users)"
            ));
            assert_eq!(orphans, 0, "orphans in {table}");
        }
        if t.is_sqlite() {
            let AnyConnection::Sqlite(mut raw) = t.raw() else {
                unreachable!()
            };
            let problems: Vec<ForeignKeyProblem> = diesel::sql_query("PRAGMA foreign_key_check")
                .load(&mut raw)
                .unwrap();
            let tables: Vec<_> = problems.iter().map(|p| p.table.as_str()).collect();
            assert!(tables.is_empty(), "foreign key violations in {tables:?}");
        }
        // The refresh tokens went with the account.
        assert_eq!(
            t.db.rotate_refresh_token(
                "1-0",
                now(),
                NewRefreshRecord {
                    token_id: "1-0-next".into(),
                    family_id: "f".into(),
                    user_id: alice.id,
                    issued_at: now(),
                    expires_at: now() + Duration::days(7),
                },
            )
            .await
            .unwrap(),
            RefreshConsumption::Unknown
        );

        assert_eq!(t.db.delete_user(alice.id).await.unwrap(), None);

        // A record of a request that finished after the deletion is pseudonymised too.
        let late = UsageRecord {
            user_id: alice.id,
            api_key_id: ApiKeyId::random(),
            model_id: None,
            session_id: None,
            upstream: None,
            usage: None,
            usage_source: None,
            outcome: UsageOutcome::Completed,
            status: 200,
            stream: false,
            latency_ms: 1,
            created_at: now(),
        };
        let bobs = UsageRecord {
            user_id: bob.id,
            ..late.clone()
        };
        t.db.insert_usage(vec![late, bobs]).await.unwrap();
        assert_eq!(rows_of(t, &alice), [0; 6]);
        assert_eq!(rows_of(t, &bob)[5], 4);
        assert_eq!(
            t.count("SELECT COUNT(*) AS n FROM usage_records WHERE user_id < 0"),
            4
        );
    })
    .await;
}

#[tokio::test]
async fn deleting_an_account_that_owns_nothing_reports_nothing() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        assert_eq!(
            t.db.delete_user(alice.id).await.unwrap(),
            Some(AccountDeletion::default())
        );
        assert_eq!(t.db.delete_user(UserId::random()).await.unwrap(), None);
    })
    .await;
}
