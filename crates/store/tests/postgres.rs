//! What only the PostgreSQL store has to show: its migrations are versioned
//! and refuse a newer schema, its writer commits groups with a savepoint per
//! write (a refused write rolls back alone, the rest keep their order), and
//! an acknowledged write is committed (another connection sees it).

mod common;

use store::postgres::Postgres;
use store::Durability;
use wire::Error;

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_versioned_and_a_newer_schema_is_refused() {
    let Some(common::Db::Postgres(url)) = common::postgres().await else { return };
    drop(Postgres::connect(&url).await.unwrap());
    // Twice: nothing is applied again.
    drop(Postgres::connect(&url).await.unwrap());
    let c = admin(&url).await;
    let v: i64 = c.query_one("SELECT version FROM openbatch_schema", &[]).await.unwrap().get(0);
    assert_eq!(v as usize, store::postgres::db::SCHEMA_VERSION);
    let n: i64 = c.query_one("SELECT count(*) FROM openbatch_schema", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    c.execute("UPDATE openbatch_schema SET version = 999", &[]).await.unwrap();
    let e = Postgres::connect(&url).await.err().expect("a newer schema is refused");
    assert!(e.contains("newer openbatch"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_rolls_back_alone_and_acknowledged_writes_are_committed() {
    let Some(common::Db::Postgres(url)) = common::postgres().await else { return };
    let pg = Postgres::connect(&url).await.unwrap();
    pg.write(|c| c.execute("CREATE TABLE t (n serial PRIMARY KEY, v bigint NOT NULL)", &[]).map(|_| ())).await.unwrap();
    let insert = |v: i64, fail: bool| {
        move |c: &mut store::postgres::PgConn| {
            c.execute("INSERT INTO t (v) VALUES ($1)", &[&v])?;
            if fail {
                return Err(Error::internal("refused"));
            }
            Ok(v)
        }
    };
    // Queued together: they share groups; the refused one leaves no row.
    let a = pg.submit(insert(1, false), Durability::Relaxed);
    let b = pg.submit(insert(2, true), Durability::Prompt);
    let c = pg.submit(insert(3, false), Durability::Relaxed);
    let d = pg.submit(insert(4, false), Durability::Synced);
    assert_eq!(a.await.unwrap(), 1);
    assert!(b.await.is_err());
    assert_eq!(c.await.unwrap(), 3);
    assert_eq!(d.await.unwrap(), 4);
    let other = admin(&url).await;
    let values = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>();
    assert_eq!(values(other.query("SELECT v FROM t ORDER BY n", &[]).await.unwrap()), vec![1, 3, 4]);
    // Every durability is committed when it is answered.
    for (i, dur) in [Durability::Relaxed, Durability::Prompt, Durability::Synced].into_iter().enumerate() {
        let v = 10 + i as i64;
        assert_eq!(pg.submit(insert(v, false), dur).await.unwrap(), v);
        let last = values(other.query("SELECT v FROM t ORDER BY n DESC LIMIT 1", &[]).await.unwrap());
        assert_eq!(last, vec![v]);
    }
    // A write that breaks the database's rules (a unique key) is refused
    // alone too, and the writer goes on.
    let dup = pg.submit(|c: &mut store::postgres::PgConn| c.execute("INSERT INTO t (n, v) VALUES (1, 0)", &[]), Durability::Synced);
    let ok = pg.submit(insert(20, false), Durability::Synced);
    assert!(dup.await.is_err());
    assert_eq!(ok.await.unwrap(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_bad_url_is_a_clear_error() {
    let e = Postgres::connect("postgresql://nobody:secret@127.0.0.1:1/none").await.err().unwrap();
    assert!(e.contains("cannot connect") && !e.contains("secret"), "{e}");
    let e = Postgres::connect("postgresql://u@h:notaport/db").await.err().unwrap();
    assert!(e.contains("bad database URL"), "{e}");
}
