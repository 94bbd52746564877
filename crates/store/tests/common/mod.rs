//! The databases the store's tests run on: SQLite in a temporary directory,
//! and PostgreSQL in a fresh database on the server `OPENBATCH_TEST_PG`
//! names (a URL of a database the tests may create databases from, e.g.
//! what `scripts/pg-server start DIR` prints). Without it the PostgreSQL
//! variants are skipped with a message — except under CI (`CI` set), where
//! they must run.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use store::Store;

/// A database a test can open (and open again, as after a restart).
pub enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Db {
    pub async fn open(&self) -> Store {
        match self {
            Db::Sqlite(dir) => Store::open(dir.path()).unwrap(),
            Db::Postgres(url) => Store::connect_postgres(url).await.unwrap(),
        }
    }
}

pub fn sqlite() -> Db {
    Db::Sqlite(tempfile::tempdir().unwrap())
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..].find('/').map(|i| i + scheme_end).unwrap_or(base.len());
    format!("{}/{db}{query}", &base[..host_end])
}

/// A fresh, empty PostgreSQL database; None (with a message) when no
/// server is configured.
pub async fn postgres() -> Option<Db> {
    let Ok(admin) = std::env::var("OPENBATCH_TEST_PG") else {
        if std::env::var_os("CI").is_some() {
            panic!("OPENBATCH_TEST_PG is not set under CI: the PostgreSQL store's tests must run (scripts/test starts a server)");
        }
        eprintln!(
            "SKIPPED the PostgreSQL variant: set OPENBATCH_TEST_PG=postgresql://USER@HOST:PORT/DB (scripts/pg-server start DIR prints one)"
        );
        return None;
    };
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "obtest_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
    );
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("connect to OPENBATCH_TEST_PG");
    let task = tokio::spawn(conn);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create a test database");
    drop(client);
    let _ = task.await;
    Some(Db::Postgres(with_database(&admin, &name)))
}

/// Runs a test body on SQLite and on PostgreSQL: `both!(name)` for an
/// `async fn name(db: Db)` makes the tests `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::common::sqlite()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = super::common::postgres().await {
                    super::$name(db).await
                }
            }
        }
    };
}
