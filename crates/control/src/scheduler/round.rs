//! The scheduling round: free slots (and queue room) filled with ready tasks,
//! highest job priority first.

use crate::cluster::Cluster;
use crate::execution;
use crate::launch::{build_launch, node_info};
use crate::scheduler::attempts::assign;
use crate::scheduler::placement;
use crate::state::node::Slot;
use crate::state::sched::{AssignFn, Unwritten};
use proto::{TaskLaunch, ToAgent};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use wire::models::{CloudJob, CloudTask};
use wire::Error;

/// The order in which a round offers the pool's jobs their slots, each
/// with the most it may take on that offer. `jobs` come highest priority
/// first, then oldest. With the pool's `jobDefaultOrder` `creationtime`,
/// that is the order, and each job takes what it can. With `none` (the
/// default) the service schedules "uniformly from all equal-priority
/// jobs": within a priority, the jobs with the fewest tasks in the pool
/// (`running`, by job key) come first and each first takes an even share
/// of the round's `budget` (its free slots, or with none its queue
/// places), then each may take what is left.
pub fn job_order<'a>(
    jobs: &'a [CloudJob],
    by_creation: bool,
    budget: usize,
    running: &std::collections::HashMap<String, usize>,
) -> Vec<(&'a CloudJob, usize)> {
    if by_creation {
        return jobs.iter().map(|j| (j, usize::MAX)).collect();
    }
    let mut out = Vec::with_capacity(jobs.len() * 2);
    for group in jobs.chunk_by(|a, b| a.priority == b.priority) {
        if group.len() == 1 {
            out.push((&group[0], usize::MAX));
            continue;
        }
        let mut group: Vec<&CloudJob> = group.iter().collect();
        // Stable: equally loaded jobs keep their creation order.
        group.sort_by_key(|j| running.get(&store::key_of(&j.id)).copied().unwrap_or(0));
        let share = budget.div_ceil(group.len()).max(1);
        out.extend(group.iter().map(|j| (*j, share)));
        out.extend(group.iter().map(|j| (*j, usize::MAX)));
    }
    out
}

impl Cluster {
    /// Tasks running or queued in the pool, by job key.
    fn tasks_per_job(&self, pool: &str) -> std::collections::HashMap<String, usize> {
        let mut m = std::collections::HashMap::new();
        let core = self.core();
        for n in core.nodes.values().filter(|n| n.pool_id == pool) {
            for s in n.running.values().chain(n.queued.iter().map(|(_, s)| s)) {
                *m.entry(store::key_of(&s.job_id)).or_insert(0) += 1;
            }
        }
        m
    }

    /// Attempt ids continue after the highest one ever handed out.
    pub async fn init_attempts(&self) -> Result<(), Error> {
        // Above every id an earlier server may have issued, written or not:
        // ids start at the clock's microseconds (no server issues more than
        // one attempt per microsecond on average).
        let max = self.store.max_attempt().await?;
        let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        let first = (max + 1).max(now_us);
        self.next_attempt.store(first, Ordering::Relaxed);
        self.first_attempt.store(first, Ordering::Relaxed);
        self.initialized.send_replace(true);
        Ok(())
    }

    /// One scheduling round: fills free slots with active tasks, highest job
    /// priority first. Placement happens in memory and the agents are told
    /// at once; the assignments are persisted as one write queued *before*
    /// the agents hear of them (so every later report of those attempts is
    /// written after them). Until that write commits, the tasks are held in
    /// `inflight` so no round picks them twice. If the server dies before
    /// the commit, the tasks are still `active` in the database and the
    /// reconnecting agents are told to kill the attempts: tasks may run more
    /// than once, as Batch documents (tasks must be idempotent).
    ///
    /// `now` is the current time (queues are rearranged at most every
    /// `RETRACT_EVERY`; after a restart, scheduling waits for the nodes
    /// expected back until their deadline).
    ///
    /// When every slot of the pool is taken, tasks go to the nodes' queues
    /// (`Node::queued`), so a slot that frees starts its next task without a
    /// round trip to the server. A queued attempt's assignment is written
    /// when the node reports it (see `write_attempt`).
    pub async fn schedule(self: &Arc<Self>, account_url: &str, now: Instant) -> Result<usize, Error> {
        if self.awaiting_nodes(now) {
            return Ok(0);
        }
        let pools: Vec<String> = {
            let mut core = self.core();
            let nodes = &mut core.nodes;
            let mut p: Vec<String> = nodes
                .values()
                // (A full queue still gets a look: a higher-priority job
                // may take its place, see `yield_queues`.)
                .filter(|n| n.schedulable() && (n.free() > 0 || n.queue_room() > 0 || !n.queued.is_empty()))
                .map(|n| n.pool_id.clone())
                .collect();
            p.sort();
            p.dedup();
            p
        };
        let mut started = 0;
        for pool in pools {
            let policy = self.core().nodes.values().find(|n| n.pool_id == pool).map(|n| n.fill).unwrap_or(placement::Fill::Spread);
            // The slots free when the round starts are shared out in
            // priority order; slots that free up during the round wait for
            // the next one (which follows at once), so a lower-priority job
            // never takes a slot a higher-priority job was not offered.
            let (mut budget, mut queue_budget): (usize, usize) = self
                .core()
                .nodes
                .values()
                .filter(|n| n.pool_id == pool && n.schedulable())
                .fold((0, 0), |(f, q), n| (f + n.free() as usize, q + n.queue_room() as usize));
            let jobs = self.jobs_of(&pool).await?;
            let by_creation = self.core().nodes.values().find(|n| n.pool_id == pool).is_some_and(|n| n.jobs_by_creation);
            // Free slots are shared first; with none free, queue places.
            let shared = if budget > 0 { budget } else { queue_budget };
            let order = job_order(&jobs, by_creation, shared, &self.tasks_per_job(&pool));
            for (job, share) in order {
                let (free, job_running) = {
                    let mut core = self.core();
                    let nodes = &mut core.nodes;
                    let pool_nodes = nodes.values().filter(|n| n.pool_id == pool);
                    let (free, room) = pool_nodes
                        .clone()
                        .filter(|n| n.schedulable())
                        .fold((0usize, 0usize), |(f, q), n| (f + n.free() as usize, q + n.queue_room() as usize));
                    let running = pool_nodes
                        .flat_map(|n| n.running.values().chain(n.queued.iter().map(|(_, s)| s)))
                        .filter(|s| s.job_id == job.id)
                        .count();
                    (free.min(budget) + room.min(queue_budget), running)
                };
                if free == 0 {
                    let capped = usize::try_from(job.max_parallel_tasks).is_ok_and(|cap| job_running >= cap);
                    if !capped {
                        self.yield_queues(&pool, job, &jobs, now).await?;
                    }
                    break;
                }
                // `maxParallelTasks` caps the job's tasks running at once (-1: no cap).
                let want = match usize::try_from(job.max_parallel_tasks) {
                    Ok(cap) => free.min(cap.saturating_sub(job_running)),
                    Err(_) => free,
                };
                let want = want.min(share);
                if want == 0 {
                    continue;
                }
                let manager = job.job_manager_task.as_ref().and_then(|m| m.id.as_deref());
                // Tasks that need more slots than any node of the pool has
                // wait (as in the service) without holding up the others.
                let max_slots = self.core().nodes.values().filter(|n| n.pool_id == pool).map(|n| n.slots).max().unwrap_or(1);
                let tasks = self.take_ready(&job.id, manager, want, max_slots).await?;
                // Nodes that ran the job's preparation task (when it has one).
                let prepared = if tasks.is_empty() { None } else { self.prepare_nodes(job, &pool, account_url) };
                let mut unplaced: Vec<CloudTask> = Vec::new();
                let (mut placed_slots, mut queued_slots) = (0usize, 0usize);
                let mut batch: Vec<(String, String, AssignFn)> = Vec::new();
                let mut sent: Vec<(String, u64, (String, String))> = Vec::new();
                let mut launches: Vec<(String, TaskLaunch)> = Vec::new();
                for task in tasks {
                    let key = (store::key_of(&job.id), store::key_of(&task.id));
                    if self.core().sched.inflight.contains(&key) {
                        continue;
                    }
                    // A job manager that runs exclusively takes a whole node.
                    let exclusive = execution::manager_of(job, &task.id).is_some_and(|m| m.run_exclusive != Some(false));
                    // A job manager with `allowLowPriorityNode: false` runs on a dedicated node only.
                    let dedicated_only = execution::manager_of(job, &task.id).is_some_and(|m| m.allow_low_priority_node == Some(false));
                    let slots = if exclusive {
                        self.core().nodes.values().filter(|n| n.pool_id == pool).map(|n| n.slots).max().unwrap_or(1)
                    } else {
                        task.required_slots.max(1) as u32
                    };
                    let attempt = self.next_attempt.fetch_add(1, Ordering::Relaxed);
                    // A node's affinityId is `TVM:{node id}` (see `node_info`).
                    let affinity = task.affinity_info.as_ref().map(|a| a.affinity_id.strip_prefix("TVM:").unwrap_or(&a.affinity_id));
                    let multi = task.multi_instance_settings.is_some();
                    let mut instance_launches = Vec::new();
                    let mut queued = false;
                    let placed = if multi {
                        self.place_multi(account_url, job, &task, &pool, policy, prepared.as_ref(), affinity, attempt).map(
                            |(primary, ls)| {
                                instance_launches = ls;
                                primary
                            },
                        )
                    } else {
                        let mut core = self.core();
                        let nodes = &mut core.nodes;
                        let candidates: Vec<placement::Candidate> = nodes
                            .values()
                            .filter(|n| n.pool_id == pool && n.schedulable() && (n.is_dedicated || !dedicated_only))
                            .filter(|n| prepared.as_ref().is_none_or(|p| p.contains(&n.id)))
                            .map(|n| placement::Candidate { id: n.id.clone(), free: n.free(), used: n.used() })
                            .collect();
                        let slot = Slot { job_id: job.id.clone(), task_id: task.id.clone(), slots };
                        match placement::place(&candidates, slots, policy, affinity).and_then(|id| nodes.get_mut(&id)) {
                            Some(n) => {
                                n.running.insert(attempt, slot);
                                n.refresh_busy_state();
                                Some((n.id.clone(), n.root_dir.clone(), n.is_dedicated))
                            }
                            // No node has room: the queue of a node it fits on
                            // whose slots are all taken (queued on a node with a
                            // free slot, it would keep that slot from smaller
                            // tasks: the agent starts its queue in order).
                            None if !exclusive && queued_slots < queue_budget => {
                                let candidates: Vec<placement::Candidate> = nodes
                                    .values()
                                    .filter(|n| n.pool_id == pool && n.schedulable() && n.slots >= slots && n.free() == 0)
                                    .filter(|n| n.is_dedicated || !dedicated_only)
                                    .filter(|n| prepared.as_ref().is_none_or(|p| p.contains(&n.id)))
                                    .map(|n| placement::Candidate {
                                        id: n.id.clone(),
                                        free: n.queue_room(),
                                        used: n.used() + n.queued_slots(),
                                    })
                                    .collect();
                                placement::place(&candidates, slots, policy, affinity).and_then(|id| nodes.get_mut(&id)).map(|n| {
                                    n.queued.push((attempt, slot));
                                    queued = true;
                                    (n.id.clone(), n.root_dir.clone(), n.is_dedicated)
                                })
                            }
                            None => None,
                        }
                    };
                    let Some((node_id, root_dir, dedicated)) = placed else {
                        unplaced.push(task);
                        continue;
                    };
                    if multi {
                        placed_slots += instance_launches.len();
                        launches.append(&mut instance_launches);
                    } else {
                        if queued {
                            queued_slots += slots as usize;
                        } else {
                            placed_slots += slots as usize;
                        }
                        let pool_packages = self.core().nodes.get(&node_id).map(|n| n.pool_packages.clone()).unwrap_or_default();
                        let mut launch = build_launch(
                            &self.config,
                            account_url,
                            job,
                            &task,
                            &pool_packages,
                            &pool,
                            &node_id,
                            &root_dir,
                            dedicated,
                            attempt,
                        );
                        launch.slots = slots;
                        launch.adoptable = true;
                        launches.push((node_id.clone(), launch));
                    }
                    self.core().sched.inflight.insert(key.clone());
                    let change = assign(attempt, node_id.clone(), node_info(account_url, &pool, &node_id, &job.id, &task.id));
                    if queued {
                        self.core().sched.unwritten.insert(attempt, Unwritten { key, node: node_id.clone(), assign: change });
                        // Taken back between its placement and now (e.g. the
                        // node disconnected)? Then it is not sent at all.
                        let still = self.core().nodes.get(&node_id).is_some_and(|n| n.queued.iter().any(|(a, _)| *a == attempt));
                        if !still {
                            self.abandon(attempt);
                            launches.retain(|(_, l)| l.attempt != attempt);
                        }
                    } else {
                        batch.push((job.id.clone(), task.id.clone(), change));
                        sent.push((node_id, attempt, key));
                    }
                    started += 1;
                }
                budget = budget.saturating_sub(placed_slots);
                queue_budget = queue_budget.saturating_sub(queued_slots);
                if !unplaced.is_empty() {
                    if let Some(r) = self.core().sched.ready.get_mut(&store::key_of(&job.id)) {
                        for t in unplaced.into_iter().rev() {
                            r.tasks.push_front(t);
                        }
                    }
                }
                if batch.is_empty() {
                    for (node_id, launch) in launches {
                        self.send(&node_id, ToAgent::Start(Box::new(launch)));
                    }
                    continue;
                }
                let done = self.store.update_tasks(batch, store::Durability::Relaxed);
                for (node_id, launch) in launches {
                    self.send(&node_id, ToAgent::Start(Box::new(launch)));
                }
                let me = self.clone();
                tokio::spawn(async move {
                    let results = done.await;
                    let mut stale = false;
                    for (i, (node_id, attempt, key)) in sent.into_iter().enumerate() {
                        {
                            let mut core = me.core();
                            core.sched.inflight.remove(&key);
                            stale |= core.sched.readied_inflight.remove(&key);
                        }
                        let ok = matches!(&results, Ok(r) if r.get(i).is_some_and(|x| x.is_ok()));
                        if !ok {
                            // The task changed meanwhile (terminated, deleted, job ended): stop the attempt.
                            // (A read-ahead that began while it was in flight left it out: read again.)
                            me.kill(&node_id, attempt);
                            stale = true;
                        }
                    }
                    if stale {
                        me.store.bump_tasks();
                    }
                    me.wake.notify_one();
                });
            }
            self.rebalance(&pool, now);
        }
        Ok(started)
    }
}
