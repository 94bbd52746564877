//! The node provider seam: the control plane decides how many nodes each
//! pool has and which go; the provider only starts and stops them.

mod support;
use serde_json::json;
use std::sync::Arc;
use support::*;

async fn world() -> (World, Arc<FakeProvider>) {
    let p = Arc::new(FakeProvider::default());
    (World::with_provider(p.clone()).await, p)
}

/// A pool's target is asked of the provider once; nodes started but not yet
/// joined count, so the next pass asks for nothing more.
#[tokio::test]
async fn a_pool_target_asks_the_provider_for_that_many_nodes_once() {
    let (w, p) = world().await;
    w.pool_with("p", 1, "spread", json!({"targetDedicatedNodes": 3})).await;
    w.cluster.reconcile_pools().await.unwrap();
    assert_eq!(p.added.lock().unwrap().len(), 3);
    w.cluster.reconcile_pools().await.unwrap();
    assert_eq!(p.added.lock().unwrap().len(), 3, "pending nodes count toward the target");
    assert_eq!(w.cluster.allocation_state("p", 3), "resizing", "nodes started but not joined");
    let added = p.added.lock().unwrap().clone();
    for id in added {
        w.join("p", &id).await;
    }
    assert_eq!(w.cluster.allocation_state("p", 3), "steady");
}

/// Nodes that joined from elsewhere count toward the target: the provider
/// makes up the difference only.
#[tokio::test]
async fn remote_nodes_count_toward_the_target() {
    let (w, p) = world().await;
    w.pool_with("p", 1, "spread", json!({"targetDedicatedNodes": 2})).await;
    w.join("p", "remote-1").await;
    w.cluster.reconcile_pools().await.unwrap();
    assert_eq!(p.added.lock().unwrap().len(), 1);
}

/// Shrinking removes the provider's idle nodes first; a busy node stays.
#[tokio::test]
async fn shrinking_removes_idle_provider_nodes_first() {
    let (w, p) = world().await;
    w.pool_with("p", 1, "spread", json!({"targetDedicatedNodes": 2})).await;
    w.cluster.reconcile_pools().await.unwrap();
    let ids = p.added.lock().unwrap().clone();
    let mut a = w.join("p", &ids[0]).await;
    let _b = w.join("p", &ids[1]).await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["t"], |_| {}).await;
    w.round().await;
    let busy = if a.launches().is_empty() { ids[1].clone() } else { ids[0].clone() };
    w.store
        .update_pool("p", Default::default(), |doc, _| {
            doc.insert("targetDedicatedNodes".into(), json!(1));
            Ok(())
        })
        .await
        .unwrap();
    w.cluster.reconcile_pools().await.unwrap();
    let removed = p.removed.lock().unwrap().clone();
    assert_eq!(removed.len(), 1);
    assert_ne!(removed[0], busy, "the idle node goes, not the one running a task");
}

/// A deleted pool loses every node, remote ones included, and its document
/// goes once no node is left.
#[tokio::test]
async fn a_deleted_pool_loses_all_nodes_then_goes() {
    let (w, p) = world().await;
    w.pool_with("p", 1, "spread", json!({"targetDedicatedNodes": 1})).await;
    w.cluster.reconcile_pools().await.unwrap();
    let id = p.added.lock().unwrap()[0].clone();
    let mut local = w.join("p", &id).await;
    let mut remote = w.join("p", "remote-1").await;
    w.store
        .update_pool("p", Default::default(), |doc, _| {
            doc.insert("state".into(), json!("deleting"));
            Ok(())
        })
        .await
        .unwrap();
    w.cluster.reconcile_pools().await.unwrap();
    w.settle().await;
    assert!(p.removed.lock().unwrap().contains(&id));
    for agent in [&mut local, &mut remote] {
        assert!(agent.messages().iter().any(|m| matches!(m, proto::ToAgent::Shutdown)), "{} told to shut down", agent.id);
    }
    w.cluster.reconcile_pools().await.unwrap();
    assert!(w.store.get_pool("p").await.is_err(), "the pool document is gone");
}
