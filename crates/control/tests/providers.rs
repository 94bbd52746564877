//! The node provider seam: the control plane decides how many nodes each
//! pool has and which go; the provider only starts and stops them.

mod support;
use control::provider::reconcile::RETRY_FIRST;
use control::provider::registry::Entry;
use control::provider::registry::{BuildProvider, ProviderDecl, Providers};
use control::provider::ProviderEvent;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
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

/// Two providers: the built-in default (`local`, a fake here) and one
/// declared as `docker` that a pool selects by its `vmSize`.
fn two(docker_max: Option<usize>, docker_default: bool) -> (Arc<FakeProvider>, Arc<FakeProvider>, Providers) {
    let local = Arc::new(FakeProvider::named("l-"));
    let docker = Arc::new(FakeProvider::named("d-"));
    let entry = |name: &str, max_nodes, provider: Arc<FakeProvider>| Entry {
        name: name.into(),
        kind: name.into(),
        description: format!("{name} nodes"),
        max_nodes,
        provider,
    };
    let providers = Providers::new(
        vec![entry("local", None, local.clone()), entry("docker", docker_max, docker.clone())],
        if docker_default { 1 } else { 0 },
    );
    (local, docker, providers)
}

/// A pool whose `vmSize` names a declared provider (in any case) gets its
/// nodes there; any other size goes to the default provider.
#[tokio::test]
async fn a_pool_vm_size_selects_its_provider() {
    let (local, docker, providers) = two(None, false);
    let w = World::with_providers(providers).await;
    w.pool_with("a", 1, "spread", json!({"targetDedicatedNodes": 2, "vmSize": "Docker"})).await;
    w.pool_with("b", 1, "spread", json!({"targetDedicatedNodes": 1, "vmSize": "standard_d2s_v3"})).await;
    w.cluster.reconcile_pools().await.unwrap();
    assert_eq!(*docker.added.lock().unwrap(), vec!["d-a-1", "d-a-2"]);
    assert_eq!(*local.added.lock().unwrap(), vec!["l-b-1"]);
    // Nodes of one provider count for their pool only, joined or not.
    w.join("a", "d-a-1").await;
    w.cluster.reconcile_pools().await.unwrap();
    assert_eq!(docker.added.lock().unwrap().len(), 2);
    assert_eq!(local.added.lock().unwrap().len(), 1);
    assert_eq!(w.cluster.providers().for_size("DOCKER").name, "docker");
    assert_eq!(w.cluster.providers().for_size("docker2").name, "local");
}

/// A declared default takes every size that names no provider.
#[tokio::test]
async fn the_declared_default_takes_unnamed_sizes() {
    let (local, docker, providers) = two(None, true);
    let w = World::with_providers(providers).await;
    w.pool_with("b", 1, "spread", json!({"targetDedicatedNodes": 1, "vmSize": "standard_d2s_v3"})).await;
    w.pool_with("c", 1, "spread", json!({"targetDedicatedNodes": 1, "vmSize": "local"})).await;
    w.cluster.reconcile_pools().await.unwrap();
    assert_eq!(*docker.added.lock().unwrap(), vec!["d-b-1"]);
    assert_eq!(*local.added.lock().unwrap(), vec!["l-c-1"], "a size that names the local provider still selects it");
}

/// Removing a node goes to the provider that runs it, and only there.
#[tokio::test]
async fn removal_goes_to_the_owning_provider() {
    let (local, docker, providers) = two(None, false);
    let w = World::with_providers(providers).await;
    w.pool_with("a", 1, "spread", json!({"targetDedicatedNodes": 1, "vmSize": "docker"})).await;
    w.cluster.reconcile_pools().await.unwrap();
    w.join("a", "d-a-1").await;
    w.store
        .update_pool("a", Default::default(), |doc, _| {
            doc.insert("targetDedicatedNodes".into(), json!(0));
            Ok(())
        })
        .await
        .unwrap();
    w.cluster.reconcile_pools().await.unwrap();
    w.settle().await;
    assert_eq!(*docker.removed.lock().unwrap(), vec!["d-a-1"]);
    assert!(local.removed.lock().unwrap().is_empty());
}

async fn resize_errors(w: &World, pool: &str) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_str(&w.store.get_pool(pool).await.unwrap().doc).unwrap();
    doc.get("resizeErrors").cloned().unwrap_or(serde_json::Value::Null)
}

/// A provider that cannot start nodes: the pool's `resizeErrors` say so,
/// the provider is not asked again before the back-off passes, and once it
/// works the error clears.
#[tokio::test]
async fn a_failing_provider_shows_in_resize_errors_and_is_retried_with_backoff() {
    let (_local, docker, providers) = two(None, false);
    let w = World::with_providers(providers).await;
    *docker.fail.lock().unwrap() = Some("engine at unix:///nowhere is down".into());
    w.pool_with("a", 1, "spread", json!({"targetDedicatedNodes": 2, "vmSize": "docker"})).await;
    let t0 = std::time::Instant::now();
    w.cluster.reconcile_pools_at(t0).await.unwrap();
    let errors = resize_errors(&w, "a").await;
    assert_eq!(errors[0]["code"], "AllocationFailed", "{errors}");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(message.contains("'docker'") && message.contains("engine at unix:///nowhere is down"), "{message}");
    // Fixed, but the back-off still runs: not asked.
    *docker.fail.lock().unwrap() = None;
    w.cluster.reconcile_pools_at(t0 + Duration::from_millis(500)).await.unwrap();
    assert!(docker.added.lock().unwrap().is_empty(), "asked again within the back-off");
    w.cluster.reconcile_pools_at(t0 + RETRY_FIRST + Duration::from_millis(1)).await.unwrap();
    assert_eq!(docker.added.lock().unwrap().len(), 2);
    assert_eq!(resize_errors(&w, "a").await[0]["code"], "AllocationFailed", "kept until the nodes joined");
    let _a = w.join("a", "d-a-1").await;
    let _b = w.join("a", "d-a-2").await;
    w.cluster.reconcile_pools().await.unwrap();
    assert_eq!(resize_errors(&w, "a").await, serde_json::Value::Null, "cleared once the pool has its nodes");
}

/// A failure the provider finds later (a container that would not start)
/// comes back as an event: the pool's `resizeErrors` show it, and the pool
/// asks again after the back-off, which doubles.
#[tokio::test]
async fn an_asynchronous_add_failure_shows_in_resize_errors() {
    let (_local, docker, providers) = two(None, false);
    let w = World::with_providers(providers).await;
    w.pool_with("a", 1, "spread", json!({"targetDedicatedNodes": 1, "vmSize": "docker"})).await;
    let t0 = std::time::Instant::now();
    w.cluster.reconcile_pools_at(t0).await.unwrap();
    assert_eq!(docker.added.lock().unwrap().len(), 1);
    // The provider dropped the node it could not start, and says why.
    docker.nodes.lock().unwrap().clear();
    docker.events.lock().unwrap().push(ProviderEvent::AddFailed { pool: "a".into(), reason: "no such image: openbatch-node:x".into() });
    w.cluster.reconcile_pools_at(t0).await.unwrap();
    let errors = resize_errors(&w, "a").await;
    assert_eq!(errors[0]["code"], "AllocationFailed", "{errors}");
    assert!(errors[0]["message"].as_str().unwrap().contains("no such image"), "{errors}");
    assert_eq!(docker.added.lock().unwrap().len(), 1, "not asked again at once");
    w.cluster.reconcile_pools_at(t0 + RETRY_FIRST + Duration::from_millis(1)).await.unwrap();
    assert_eq!(docker.added.lock().unwrap().len(), 2, "asked again after the back-off");
}

/// The back-off doubles with each failure, up to its cap.
#[tokio::test]
async fn the_backoff_doubles() {
    let (_local, docker, providers) = two(None, false);
    let w = World::with_providers(providers).await;
    *docker.fail.lock().unwrap() = Some("sbatch: error: invalid partition".into());
    w.pool_with("a", 1, "spread", json!({"targetDedicatedNodes": 1, "vmSize": "docker"})).await;
    let t0 = std::time::Instant::now();
    w.cluster.reconcile_pools_at(t0).await.unwrap(); // fails; next try at +2 s
    w.cluster.reconcile_pools_at(t0 + Duration::from_secs(3)).await.unwrap(); // fails; next at +3+4 s
    *docker.fail.lock().unwrap() = None;
    w.cluster.reconcile_pools_at(t0 + Duration::from_secs(6)).await.unwrap();
    assert!(docker.added.lock().unwrap().is_empty(), "the second wait is twice the first");
    w.cluster.reconcile_pools_at(t0 + Duration::from_secs(8)).await.unwrap();
    assert_eq!(docker.added.lock().unwrap().len(), 1);
}

/// `max-nodes` caps a provider over all its pools; what it cannot give
/// shows as a quota error.
#[tokio::test]
async fn max_nodes_caps_a_provider() {
    let (_local, docker, providers) = two(Some(3), false);
    let w = World::with_providers(providers).await;
    w.pool_with("a", 1, "spread", json!({"targetDedicatedNodes": 2, "vmSize": "docker"})).await;
    w.cluster.reconcile_pools().await.unwrap();
    w.pool_with("b", 1, "spread", json!({"targetDedicatedNodes": 2, "vmSize": "docker"})).await;
    w.cluster.reconcile_pools().await.unwrap();
    assert_eq!(docker.added.lock().unwrap().len(), 3);
    let errors = resize_errors(&w, "b").await;
    assert_eq!(errors[0]["code"], "AccountCoreQuotaReached", "{errors}");
    assert_eq!(resize_errors(&w, "a").await, serde_json::Value::Null);
}

/// A node its provider reports dead is `unusable` and its task goes back
/// to the queue, to run on another node.
#[tokio::test]
async fn a_lost_node_is_unusable_and_its_tasks_requeue() {
    let (_local, docker, providers) = two(None, false);
    let w = World::with_providers(providers).await;
    w.pool_with("a", 1, "spread", json!({"targetDedicatedNodes": 1, "vmSize": "docker"})).await;
    w.cluster.reconcile_pools().await.unwrap();
    let mut node = w.join("a", "d-a-1").await;
    w.add_job("j", "a", |_| {}).await;
    w.add_tasks("j", &["t"], |_| {}).await;
    w.round().await;
    assert_eq!(node.launches().len(), 1);
    w.settle().await;
    docker.events.lock().unwrap().push(ProviderEvent::Lost { node: "d-a-1".into(), reason: "container exited (137)".into() });
    w.cluster.reconcile_pools().await.unwrap();
    w.settle().await;
    let state = w.cluster.node("a", "d-a-1", |n| n.state).unwrap();
    assert_eq!(state, wire::enums::ComputeNodeState::Unusable);
    assert_eq!(w.task_state("j", "t").await, wire::enums::TaskState::Active, "requeued");
    // It counts toward the target (as on Azure) until it is removed: no new node yet.
    assert_eq!(docker.added.lock().unwrap().len(), 1);
    // Liveness leaves an unusable node alone.
    w.cluster.check_liveness(std::time::Instant::now() + Duration::from_secs(60)).await;
    assert_eq!(w.cluster.node("a", "d-a-1", |n| n.state).unwrap(), wire::enums::ComputeNodeState::Unusable);
}

/// On a resize down a dead node goes before a healthy one, idle or not.
#[tokio::test]
async fn shrinking_removes_unusable_nodes_first() {
    let (_local, docker, providers) = two(None, false);
    let w = World::with_providers(providers).await;
    w.pool_with("a", 1, "spread", json!({"targetDedicatedNodes": 2, "vmSize": "docker"})).await;
    w.cluster.reconcile_pools().await.unwrap();
    let _a = w.join("a", "d-a-1").await;
    let _b = w.join("a", "d-a-2").await;
    docker.events.lock().unwrap().push(ProviderEvent::Lost { node: "d-a-2".into(), reason: "job cancelled".into() });
    w.cluster.reconcile_pools().await.unwrap();
    assert_eq!(docker.added.lock().unwrap().len(), 2, "the dead node still counts");
    w.store
        .update_pool("a", Default::default(), |doc, _| {
            doc.insert("targetDedicatedNodes".into(), json!(1));
            Ok(())
        })
        .await
        .unwrap();
    w.cluster.reconcile_pools().await.unwrap();
    w.settle().await;
    assert!(w.cluster.node("a", "d-a-2", |_| ()).is_none(), "the unusable node went");
    assert!(w.cluster.node("a", "d-a-1", |_| ()).is_some(), "the healthy one stays");
    assert_eq!(w.cluster.allocation_state("a", 1), "steady");
}

/// After a restart each provider keeps the nodes of the pools it serves:
/// the others' pools have a target of 0 for it.
#[tokio::test]
async fn recovery_gives_each_provider_its_pools() {
    let (local, docker, providers) = two(None, false);
    let w = World::with_providers(providers).await;
    w.pool_with("a", 1, "spread", json!({"targetDedicatedNodes": 2, "vmSize": "docker"})).await;
    w.pool_with("b", 1, "spread", json!({"targetDedicatedNodes": 1})).await;
    w.cluster.recover_nodes().await.unwrap();
    let target = |p: &FakeProvider, pool: &str| p.recovered.lock().unwrap().iter().find(|t| t.pool == pool).unwrap().nodes;
    assert_eq!((target(&docker, "a"), target(&docker, "b")), (2, 0));
    assert_eq!((target(&local, "a"), target(&local, "b")), (0, 1));
}

/// The configuration's declarations are checked: distinct valid names, one
/// local provider, one default.
#[test]
fn declarations_are_checked() {
    use control::provider::registry::check;
    let decl = |name: &str, kind: &str, default: bool| ProviderDecl {
        name: name.into(),
        kind: kind.into(),
        default,
        max_nodes: None,
        description: String::new(),
        build: (kind != "local").then(|| -> BuildProvider { Arc::new(|_| Arc::new(FakeProvider::default())) }),
    };
    assert!(check(&[decl("docker", "docker", true), decl("hpc", "slurm", false), decl("small", "local", false)]).is_ok());
    for (decls, says) in [
        (vec![decl("a", "docker", false), decl("A", "slurm", false)], "twice"),
        (vec![decl("a b", "docker", false)], "name"),
        (vec![decl("", "docker", false)], "name"),
        (vec![decl("x", "local", false), decl("y", "local", false)], "local"),
        (vec![decl("x", "docker", true), decl("y", "slurm", true)], "default"),
        (vec![decl("Local", "docker", false)], "local"),
    ] {
        let e = check(&decls).unwrap_err();
        assert!(e.contains(says), "{e}");
    }
}

fn states(w: &World, pool: &str) -> Vec<(String, wire::enums::ComputeNodeState)> {
    let mut s = w.cluster.pool_nodes(pool, |n| (n.id.clone(), n.state));
    s.sort_by(|a, b| a.0.cmp(&b.0));
    s
}

/// Nodes a provider was asked for are listed before their agents join —
/// `creating` while the provider makes them, `starting` once they run —
/// and the agent that joins takes its node's entry over: one node, one id,
/// creating → starting → idle. The pool resizes until they all joined.
#[tokio::test]
async fn nodes_not_joined_yet_are_listed_creating_then_starting_under_their_ids() {
    use wire::enums::ComputeNodeState::{Creating, Idle, Starting};
    let (w, p) = world().await;
    w.pool_with("p", 2, "spread", json!({"targetDedicatedNodes": 2})).await;
    w.cluster.reconcile_pools().await.unwrap();
    let ids = p.added.lock().unwrap().clone();
    assert_eq!(states(&w, "p"), vec![(ids[0].clone(), Creating), (ids[1].clone(), Creating)]);
    assert_eq!(w.cluster.node("p", &ids[0], |n| n.slots), Some(2), "the pool's task slots");
    assert_eq!(w.cluster.node_kinds("p"), vec![(Creating, true), (Creating, true)], "counted (nodecounts)");
    assert_eq!(w.cluster.allocation_state("p", 2), "resizing");
    p.set_phase(&ids[0], control::provider::NodePhase::Starting);
    w.cluster.reconcile_pools().await.unwrap();
    assert_eq!(states(&w, "p"), vec![(ids[0].clone(), Starting), (ids[1].clone(), Creating)]);
    assert_eq!(p.added.lock().unwrap().len(), 2, "listed nodes count toward the target: none more asked");
    // The scheduler does not place tasks on them.
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["t"], |_| {}).await;
    assert_eq!(w.round().await, 0, "no task on a node not joined");
    // Its agent joins: the same node, now idle, and it takes the task.
    let mut a = w.join("p", &ids[0]).await;
    assert_eq!(states(&w, "p"), vec![(ids[0].clone(), Idle), (ids[1].clone(), Creating)]);
    assert_eq!(w.cluster.allocation_state("p", 2), "resizing", "one has not joined yet");
    assert_eq!(w.round().await, 1);
    assert_eq!(a.launches().len(), 1);
    let _b = w.join("p", &ids[1]).await;
    w.cluster.reconcile_pools().await.unwrap();
    assert_eq!(w.cluster.allocation_state("p", 2), "steady");
    assert_eq!(p.added.lock().unwrap().len(), 2);
}

/// A node not joined yet can be removed like any other: its provider
/// removes it (cancels the job, removes the container); on a resize down
/// such nodes go before joined ones, idle or not.
#[tokio::test]
async fn nodes_not_joined_yet_are_removed_through_their_provider_and_go_first() {
    let (w, p) = world().await;
    w.pool_with("p", 1, "spread", json!({"targetDedicatedNodes": 3})).await;
    w.cluster.reconcile_pools().await.unwrap();
    let ids = p.added.lock().unwrap().clone();
    let _a = w.join("p", &ids[0]).await;
    // Removed by request.
    assert!(w.cluster.node_exists("p", &ids[2]));
    w.cluster.remove_node(&ids[2], true).await;
    w.settle().await;
    assert_eq!(*p.removed.lock().unwrap(), vec![ids[2].clone()]);
    assert!(w.cluster.node("p", &ids[2], |_| ()).is_none());
    // A resize down to 1: the node not joined goes, the idle joined one stays.
    w.store
        .update_pool("p", Default::default(), |doc, _| {
            doc.insert("targetDedicatedNodes".into(), json!(1));
            Ok(())
        })
        .await
        .unwrap();
    w.cluster.reconcile_pools().await.unwrap();
    w.settle().await;
    assert_eq!(*p.removed.lock().unwrap(), vec![ids[2].clone(), ids[1].clone()]);
    assert_eq!(states(&w, "p"), vec![(ids[0].clone(), wire::enums::ComputeNodeState::Idle)]);
    // The pool's deletion removes one not joined too, then the pool goes.
    w.store
        .update_pool("p", Default::default(), |doc, _| {
            doc.insert("targetDedicatedNodes".into(), json!(2));
            Ok(())
        })
        .await
        .unwrap();
    w.cluster.reconcile_pools().await.unwrap();
    let fresh = p.added.lock().unwrap()[3].clone();
    assert!(w.cluster.node("p", &fresh, |_| ()).is_some());
    w.store
        .update_pool("p", Default::default(), |doc, _| {
            doc.insert("state".into(), json!("deleting"));
            Ok(())
        })
        .await
        .unwrap();
    w.cluster.reconcile_pools().await.unwrap();
    w.settle().await;
    assert!(p.removed.lock().unwrap().contains(&fresh));
    w.cluster.reconcile_pools().await.unwrap();
    assert!(w.store.get_pool("p").await.is_err(), "the pool document is gone");
}

/// A node its provider could not start (it dropped it, and says why) is
/// no longer listed; liveness leaves nodes not joined alone (they send no
/// heartbeats), and they use no core-time.
#[tokio::test]
async fn nodes_the_provider_dropped_go_and_liveness_leaves_pending_ones_alone() {
    let (w, p) = world().await;
    w.pool_with("p", 1, "spread", json!({"targetDedicatedNodes": 1})).await;
    w.cluster.reconcile_pools().await.unwrap();
    let id = p.added.lock().unwrap()[0].clone();
    w.cluster.check_liveness(std::time::Instant::now() + Duration::from_secs(600)).await;
    assert_eq!(states(&w, "p"), vec![(id.clone(), wire::enums::ComputeNodeState::Creating)], "not declared lost");
    p.nodes.lock().unwrap().clear();
    p.events.lock().unwrap().push(ProviderEvent::AddFailed { pool: "p".into(), reason: "sbatch: error: invalid account".into() });
    w.cluster.reconcile_pools().await.unwrap();
    assert!(states(&w, "p").is_empty(), "{:?}", states(&w, "p"));
    assert!(p.removed.lock().unwrap().is_empty(), "nothing to remove: the provider dropped it");
}

/// A provider that reboots and reimages nodes itself (containers): the
/// node is `rebooting`, the provider is asked (not the agent), and the agent
/// that comes back with a new boot id makes it `idle`; its start task and
/// job preparation run again.
#[tokio::test]
async fn a_provider_reboots_its_node_and_the_agent_rejoins() {
    use wire::enums::ComputeNodeState::{Idle, Rebooting, Unusable};
    let (w, p) = world().await;
    *p.resets_itself.lock().unwrap() = Some(Ok(()));
    w.pool_with("p", 1, "spread", json!({"targetDedicatedNodes": 2})).await;
    w.cluster.reconcile_pools().await.unwrap();
    let ids = p.added.lock().unwrap().clone();
    let mut a = w.join("p", &ids[0]).await;
    w.cluster.set_node_state(&ids[0], Rebooting);
    w.cluster.reboot_node(&ids[0], true);
    w.settle().await;
    assert_eq!(*p.resets.lock().unwrap(), vec![(ids[0].clone(), true)]);
    assert!(!a.messages().iter().any(|m| matches!(m, proto::ToAgent::Reset { .. })), "the agent is not asked");
    assert_eq!(states(&w, "p")[0].1, Rebooting, "until its agent is back");
    // Liveness counts from the provider's reset: the agent has its time to rejoin.
    w.cluster.check_liveness(std::time::Instant::now() + Duration::from_secs(5)).await;
    assert_eq!(states(&w, "p")[0].1, Rebooting);
    let mut again = hello("p", &ids[0]);
    again.boot_id = "boot-2".into();
    let _a2 = w.join_with(again).await;
    assert_eq!(states(&w, "p")[0].1, Idle);
    // A provider that cannot: the node is unusable.
    *p.resets_itself.lock().unwrap() = Some(Err("cannot restart the container: no such container".into()));
    let _b = w.join("p", &ids[1]).await;
    w.cluster.set_node_state(&ids[1], Rebooting);
    w.cluster.reboot_node(&ids[1], false);
    w.settle().await;
    assert_eq!(states(&w, "p")[1], (ids[1].clone(), Unusable));
}
