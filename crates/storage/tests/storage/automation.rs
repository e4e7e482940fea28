use chrono::Duration;
use morpheus_domain::ports::AutomationRepository;
use morpheus_domain::{AutomationSettings, AutomationUpdate, SessionDuration, User};

use crate::harness::{each_backend, insert_user, now};

fn defaults(user: &User) -> AutomationSettings {
    let at = now() - Duration::hours(1);
    AutomationSettings {
        user_id: user.id,
        is_enabled: false,
        session_duration: SessionDuration::DEFAULT,
        created_at: at,
        updated_at: at,
    }
}

#[tokio::test]
async fn settings_are_created_from_the_defaults_once() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let initial = defaults(&alice);
        let first =
            t.db.get_or_create_automation(initial.clone())
                .await
                .unwrap();
        assert_eq!(first, initial);

        // Later defaults do not overwrite what is stored.
        let mut other = initial.clone();
        other.is_enabled = true;
        other.created_at = now();
        assert_eq!(t.db.get_or_create_automation(other).await.unwrap(), first);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_reads_agree() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let initial = defaults(&alice);
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let db = t.db.clone();
                let defaults = initial.clone();
                tokio::spawn(async move { db.get_or_create_automation(defaults).await })
            })
            .collect();
        let mut seen = Vec::new();
        for task in tasks {
            seen.push(task.await.unwrap().unwrap());
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
    })
    .await;
}

#[tokio::test]
async fn an_update_changes_only_the_given_fields() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let ten_minutes = SessionDuration::parse(600).unwrap();
        let initial = defaults(&alice);

        // The first update creates the row from the defaults.
        let at = now();
        let enabled =
            t.db.update_automation(
                initial.clone(),
                AutomationUpdate {
                    is_enabled: Some(true),
                    session_duration: None,
                },
                at,
            )
            .await
            .unwrap();
        assert!(enabled.is_enabled);
        assert_eq!(enabled.session_duration, SessionDuration::DEFAULT);
        assert_eq!(enabled.created_at, initial.created_at);
        assert_eq!(enabled.updated_at, at);

        let shorter =
            t.db.update_automation(
                initial.clone(),
                AutomationUpdate {
                    is_enabled: None,
                    session_duration: Some(ten_minutes),
                },
                now(),
            )
            .await
            .unwrap();
        assert!(shorter.is_enabled);
        assert_eq!(shorter.session_duration, ten_minutes);
        assert_eq!(shorter.created_at, enabled.created_at);

        let read =
            t.db.get_or_create_automation(initial.clone())
                .await
                .unwrap();
        assert_eq!(read, shorter);
    })
    .await;
}
