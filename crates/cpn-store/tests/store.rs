//! The SQLite store against a real database file in a temp dir.

use chrono::Utc;
use cpn_model::Kind;
use cpn_store::{
    LabelChange, ListQuery, NewObject, ObjectUpdate, Reference, SqliteStore, Store, StoreError,
};
use serde_json::json;
use std::sync::Arc;

fn obj(kind: Kind, name: &str, refs: Vec<Reference>) -> NewObject {
    NewObject {
        kind,
        name: name.into(),
        tenant: "system".into(),
        owner: "admin".into(),
        public: true,
        labels: Default::default(),
        spec: json!({"n": name}),
        refs,
        now: Utc::now(),
    }
}

#[tokio::test]
async fn create_update_conflict_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let site = store
        .create_object(obj(Kind::Site, "a", vec![]))
        .await
        .unwrap();
    assert_eq!(site.generation, 1);
    let dup = store.create_object(obj(Kind::Site, "a", vec![])).await;
    assert!(matches!(dup, Err(StoreError::AlreadyExists { .. })));

    let res = store
        .create_object(obj(
            Kind::Resource,
            "r",
            vec![Reference {
                field: "spec.site".into(),
                kind: Kind::Site,
                id: site.id.clone(),
            }],
        ))
        .await
        .unwrap();
    assert_eq!(res.reference("spec.site"), Some(site.id.as_str()));

    let broken = store
        .create_object(obj(
            Kind::Resource,
            "r2",
            vec![Reference {
                field: "spec.site".into(),
                kind: Kind::Site,
                id: "nope".into(),
            }],
        ))
        .await;
    assert!(matches!(broken, Err(StoreError::BrokenRef { .. })));
    assert!(
        store
            .find_object_by_name(Kind::Resource, "r2")
            .await
            .unwrap()
            .is_none(),
        "failed create left a row"
    );

    let in_use = store.delete_object(Kind::Site, &site.id, None).await;
    assert!(matches!(in_use, Err(StoreError::InUse { .. })));

    let update = |generation| ObjectUpdate {
        kind: Kind::Site,
        id: site.id.clone(),
        expected_generation: generation,
        labels: Default::default(),
        public: false,
        spec: json!({"n": "changed"}),
        refs: vec![],
        now: Utc::now(),
    };
    let updated = store.update_object(update(1)).await.unwrap();
    assert_eq!(updated.generation, 2);
    let stale = store.update_object(update(1)).await;
    assert!(matches!(
        stale,
        Err(StoreError::Conflict {
            expected: 1,
            actual: 2,
            ..
        })
    ));
    assert_eq!(
        store
            .get_object(Kind::Site, &site.id)
            .await
            .unwrap()
            .unwrap()
            .spec,
        json!({"n": "changed"})
    );

    store
        .delete_object(Kind::Resource, &res.id, Some(1))
        .await
        .unwrap();
    store
        .delete_object(Kind::Site, &site.id, Some(2))
        .await
        .unwrap();
    assert!(
        store
            .get_object(Kind::Site, &site.id)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn concurrent_writes_are_grouped_and_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .create_object(obj(Kind::Tag, &format!("t{i}"), vec![]))
                    .await
            }));
        }
        // One of them collides on purpose: its failure must not roll back the others.
        let dup = store.clone();
        tasks.push(tokio::spawn(async move {
            dup.create_object(obj(Kind::Tag, "t0", vec![])).await
        }));
        let results: Vec<_> = futures_join(tasks).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 200);
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    let all = store
        .list_objects(Kind::Tag, &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 200);
    let page = store
        .list_objects(
            Kind::Tag,
            &ListQuery {
                after: Some(all[9].id.clone()),
                limit: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|o| &o.id).collect::<Vec<_>>(),
        all[10..15].iter().map(|o| &o.id).collect::<Vec<_>>()
    );
}

async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn second_open_of_a_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = SqliteStore::open(dir.path()).unwrap();
    assert!(matches!(
        SqliteStore::open(dir.path()),
        Err(StoreError::Locked { .. })
    ));
}

#[tokio::test]
async fn labels_change_atomically_and_metrics_keep_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let a = store
        .create_object(obj(Kind::Site, "a", vec![]))
        .await
        .unwrap();
    let now = Utc::now();
    let change = |id: &str, v: Option<&str>| LabelChange {
        kind: Kind::Site,
        id: id.into(),
        key: "zone".into(),
        value: v.map(str::to_string),
        now,
    };
    let missing = store
        .change_labels(vec![
            change(&a.id, Some("west")),
            change("nope", Some("west")),
        ])
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })));
    assert!(
        store
            .get_object(Kind::Site, &a.id)
            .await
            .unwrap()
            .unwrap()
            .labels
            .is_empty(),
        "partial batch applied"
    );
    let s = store
        .change_labels(vec![change(&a.id, Some("west"))])
        .await
        .unwrap();
    assert_eq!((s.changed, s.unchanged), (1, 0));
    let s = store
        .change_labels(vec![change(&a.id, Some("west"))])
        .await
        .unwrap();
    assert_eq!((s.changed, s.unchanged), (0, 1));

    let t0 = Utc::now();
    store
        .record_metric(&a.id, t0, json!({"latency": 10}))
        .await
        .unwrap();
    let t1 = t0 + chrono::Duration::seconds(5);
    store
        .record_metric(&a.id, t1, json!({"latency": 20}))
        .await
        .unwrap();
    let at0 = store
        .metrics_at(Kind::Site, t0 + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(at0[0].value, json!({"latency": 10}));
    let now = store.metrics_at(Kind::Site, t1).await.unwrap();
    assert_eq!(now[0].value, json!({"latency": 20}));
    assert!(
        store
            .metrics_at(Kind::Site, t0 - chrono::Duration::seconds(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.metric_history(&a.id, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn sessions_of_disabled_users_and_idle_logins_are_not_found() {
    use cpn_store::{AccountStore, NewSession, NewUser, SessionKind};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store.create_tenant("lab", "").await.unwrap();
    let now = Utc::now();
    let user = store
        .create_user(NewUser {
            username: "alice".into(),
            password_hash: "x".into(),
            tenant: "lab".into(),
            role: "user".into(),
            display_name: String::new(),
            now,
        })
        .await
        .unwrap();
    let open = |hash: &str, kind| NewSession {
        token_hash: hash.into(),
        user_id: user.id.clone(),
        kind,
        name: String::new(),
        scopes: (kind == SessionKind::ApiKey).then(|| vec!["read".to_string()]),
        now,
        expires_at: now + chrono::Duration::days(1),
    };
    store
        .open_session(open("login", SessionKind::Login))
        .await
        .unwrap();
    store
        .open_session(open("key", SessionKind::ApiKey))
        .await
        .unwrap();
    let far_past = now - chrono::Duration::days(1);
    let (s, u) = store
        .lookup_session("key", now, far_past)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.scopes, u.username),
        (Some(vec!["read".into()]), "alice".into())
    );

    // Idle: a login session unused since before the cutoff is gone; an API key is not.
    let cutoff = now + chrono::Duration::seconds(1);
    assert!(
        store
            .lookup_session("login", now, cutoff)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .lookup_session("key", now, cutoff)
            .await
            .unwrap()
            .is_some()
    );
    store
        .touch_session("login", cutoff + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert!(
        store
            .lookup_session("login", now, cutoff)
            .await
            .unwrap()
            .is_some()
    );

    // Disabled: nothing of the user is found, at once.
    store.set_user_disabled("alice", true).await.unwrap();
    for token in ["login", "key"] {
        assert!(
            store
                .lookup_session(token, now, far_past)
                .await
                .unwrap()
                .is_none()
        );
    }
    store.set_user_disabled("alice", false).await.unwrap();
    assert_eq!(
        store
            .revoke_user_sessions(&user.id, Some(SessionKind::ApiKey))
            .await
            .unwrap(),
        1
    );
    assert!(
        store
            .lookup_session("key", now, far_past)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .lookup_session("login", now, far_past)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn the_audit_log_is_append_only_and_filtered_newest_first() {
    use cpn_store::{AccountStore, AuditQuery, AuditRecord};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let line = |actor: &str, action: &str| AuditRecord {
        seq: 0,
        at: Utc::now(),
        actor: actor.into(),
        tenant: "lab".into(),
        source: "127.0.0.1".into(),
        action: action.into(),
        object_kind: "sites".into(),
        object_id: "s1".into(),
        generation_before: Some(1),
        generation_after: Some(2),
        result: "success".into(),
        status: 200,
        detail: String::new(),
    };
    for (actor, action) in [
        ("alice", "sites.create"),
        ("bob", "auth.login"),
        ("alice", "sites.update"),
    ] {
        store.append_audit(line(actor, action)).await.unwrap();
    }
    let q = |actor: Option<&str>, action: Option<&str>, before: Option<u64>| AuditQuery {
        actor: actor.map(Into::into),
        action: action.map(Into::into),
        before,
        limit: 10,
        ..Default::default()
    };
    let all = store.list_audit(q(None, None, None)).await.unwrap();
    let actions: Vec<&str> = all.iter().map(|l| l.action.as_str()).collect();
    assert_eq!(actions, ["sites.update", "auth.login", "sites.create"]);
    assert_eq!(all[0].generation_before, Some(1));
    let alice = store
        .list_audit(q(Some("alice"), Some("sites."), None))
        .await
        .unwrap();
    assert_eq!(alice.len(), 2);
    let older = store
        .list_audit(q(None, None, Some(all[1].seq)))
        .await
        .unwrap();
    assert_eq!(older.len(), 1);

    // The database itself refuses to change or remove a line.
    let conn = rusqlite_connection(dir.path());
    for sql in ["UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"] {
        let err = conn.execute(sql, []).unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
}

fn rusqlite_connection(dir: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("cpn.db")).unwrap()
}
/// Join tokens count their uses in the same transaction as the node they register, refuse
/// when expired, revoked, used up or for another site (changing nothing), and a second join
/// of the same node replaces its credential.
#[tokio::test]
async fn joins_count_uses_and_replace_the_nodes_credential() {
    use cpn_store::{
        JoinRefusal, JoinStore, JoinTokenRecord, NodeJoin, NodeRegistration, RuntimeStore,
    };
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let edge = store
        .create_object(obj(Kind::Site, "edge", vec![]))
        .await
        .unwrap();
    let other = store
        .create_object(obj(Kind::Site, "other", vec![]))
        .await
        .unwrap();
    let now = Utc::now();
    let token = |id: &str, hash: &str, max_uses| JoinTokenRecord {
        id: id.into(),
        site_id: edge.id.clone(),
        site: "edge".into(),
        secret_hash: hash.into(),
        description: String::new(),
        max_uses,
        uses: 0,
        created_at: now,
        created_by: "admin".into(),
        expires_at: now + chrono::Duration::hours(1),
        revoked_at: None,
    };
    store
        .create_join_token(token("t1", "h1", Some(2)))
        .await
        .unwrap();
    let join = |hash: &str, site: &cpn_store::ObjectRecord, name: &str, cred: &str| NodeJoin {
        secret_hash: hash.into(),
        registration: NodeRegistration {
            id: format!("node-{name}"),
            site_id: site.id.clone(),
            site: site.name.clone(),
            name: name.into(),
            executor: "agent".into(),
            labels: Default::default(),
            inventory: json!({}),
            now,
        },
        credential_hash: cred.into(),
        events: vec![],
    };
    let refused = |r: cpn_store::Result<Result<_, JoinRefusal>>| r.unwrap().err();
    assert_eq!(
        refused(store.join_node(join("h1", &other, "x", "cx"), now).await),
        Some(JoinRefusal::OtherSite)
    );
    assert_eq!(
        refused(store.join_node(join("nope", &edge, "x", "cx"), now).await),
        Some(JoinRefusal::Unknown)
    );
    let (n1, t) = store
        .join_node(join("h1", &edge, "w1", "c1"), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.uses, 1);
    assert_eq!(
        store.node_credential("c1").await.unwrap().unwrap().node_id,
        n1.id
    );
    // The same node joins again: same id, the old credential is gone.
    let (again, t) = store
        .join_node(join("h1", &edge, "w1", "c2"), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id.as_str(), t.uses), (n1.id.as_str(), 2));
    assert!(store.node_credential("c1").await.unwrap().is_none());
    assert_eq!(
        refused(store.join_node(join("h1", &edge, "w3", "c3"), now).await),
        Some(JoinRefusal::UsedUp)
    );
    store
        .create_join_token(token("t2", "h2", None))
        .await
        .unwrap();
    assert_eq!(
        refused(
            store
                .join_node(
                    join("h2", &edge, "w4", "c4"),
                    now + chrono::Duration::hours(2)
                )
                .await
        ),
        Some(JoinRefusal::Expired)
    );
    store.revoke_join_token("t2", now).await.unwrap();
    assert_eq!(
        refused(store.join_node(join("h2", &edge, "w4", "c4"), now).await),
        Some(JoinRefusal::Revoked)
    );
    let listed = store.list_join_tokens().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed.iter().find(|t| t.id == "t1").unwrap().uses, 2);
    assert_eq!(store.revoke_node_credentials(&n1.id).await.unwrap(), 1);
    assert!(store.node_credential("c2").await.unwrap().is_none());
    assert_eq!(
        store.list_nodes().await.unwrap().len(),
        1,
        "refusals registered nothing"
    );
}

/// Login lockouts outlive the store (a restart) until they end; a longer one is not
/// shortened by a late write of a shorter one; unknown usernames cost no row.
#[tokio::test]
async fn login_lockouts_survive_a_reopen_until_they_end() {
    use cpn_store::{AccountStore, LoginLockout, NewUser};
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let lockout = |name: &str, secs: i64| LoginLockout {
        username: name.into(),
        failures: 6,
        locked_until: now + chrono::Duration::seconds(secs),
    };
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        store.create_tenant("lab", "").await.unwrap();
        for username in ["alice", "bob"] {
            store
                .create_user(NewUser {
                    username: username.into(),
                    password_hash: "x".into(),
                    tenant: "lab".into(),
                    role: "user".into(),
                    display_name: String::new(),
                    now,
                })
                .await
                .unwrap();
        }
        store
            .save_login_lockout(lockout("alice", 60))
            .await
            .unwrap();
        store.save_login_lockout(lockout("alice", 5)).await.unwrap();
        store.save_login_lockout(lockout("bob", 60)).await.unwrap();
        store
            .save_login_lockout(lockout("nobody", 60))
            .await
            .unwrap();
        store.clear_login_lockout("bob").await.unwrap();
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    let kept = store.login_lockouts(now).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].username, "alice");
    assert_eq!(kept[0].failures, 6);
    assert!(kept[0].locked_until > now + chrono::Duration::seconds(59));
    // Once ended it is gone.
    let later = now + chrono::Duration::seconds(61);
    assert!(store.login_lockouts(later).await.unwrap().is_empty());
    assert!(store.login_lockouts(now).await.unwrap().is_empty());
}

/// Retention deletes only lines older than its cut, in bounded batches, each with a line
/// saying so; any other delete is still refused.
#[tokio::test]
async fn the_audit_log_is_pruned_only_by_retention_and_says_so() {
    use cpn_store::{AccountStore, AuditQuery, AuditRecord};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let now = Utc::now();
    let line = |age_days: i64, action: &str, detail: &str| AuditRecord {
        seq: 0,
        at: now - chrono::Duration::days(age_days),
        actor: "alice".into(),
        tenant: "lab".into(),
        source: "127.0.0.1".into(),
        action: action.into(),
        object_kind: "sites".into(),
        object_id: "s1".into(),
        generation_before: None,
        generation_after: None,
        result: "success".into(),
        status: 200,
        detail: detail.into(),
    };
    for age in [40, 35, 31, 5, 0] {
        store
            .append_audit(line(age, "sites.update", ""))
            .await
            .unwrap();
    }
    let cut = now - chrono::Duration::days(30);
    let record = || line(0, "audit.prune", "lines pruned: ");
    assert_eq!(store.prune_audit(cut, 2, record()).await.unwrap(), 2);
    assert_eq!(store.prune_audit(cut, 2, record()).await.unwrap(), 1);
    assert_eq!(store.prune_audit(cut, 2, record()).await.unwrap(), 0);
    let all = store
        .list_audit(AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let kept: Vec<(&str, &str)> = all
        .iter()
        .map(|l| (l.action.as_str(), l.detail.as_str()))
        .collect();
    assert_eq!(
        kept,
        [
            ("audit.prune", "lines pruned: 1"),
            ("audit.prune", "lines pruned: 2"),
            ("sites.update", ""),
            ("sites.update", "")
        ]
    );
    // Outside a prune, the database refuses the delete of even an old line.
    store
        .append_audit(line(100, "sites.update", ""))
        .await
        .unwrap();
    let conn = rusqlite_connection(dir.path());
    let err = conn
        .execute("DELETE FROM audit", [])
        .unwrap_err()
        .to_string();
    assert!(err.contains("append-only"), "{err}");
}
