//! Ready tasks read ahead per job, and the pool's active jobs cached by job generation.

use crate::cluster::Cluster;
use crate::state::sched::ReadAhead;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use wire::models::{CloudJob, CloudTask};
use wire::Error;

impl Cluster {
    /// An active job from the scheduler's cache.
    pub(crate) fn cached_job(&self, job_id: &str) -> Option<CloudJob> {
        self.with_cached_job(job_id, |j| j.cloned())
    }

    /// `f` of an active job in the scheduler's cache (None: not cached),
    /// without copying it.
    pub(crate) fn with_cached_job<R>(&self, job_id: &str, f: impl FnOnce(Option<&CloudJob>) -> R) -> R {
        // (`f` runs under the core's lock: it must not take it again.)
        f(self.core().sched.job(job_id))
    }

    /// A task went back to `active` (retry, requeue). If its assignment is
    /// still in flight, a read-ahead may have left it out: see `readied_inflight`.
    pub(crate) fn readied(&self, job: &str, task: &str) {
        let key = (store::key_of(job), store::key_of(task));
        let mut core = self.core();
        if core.sched.inflight.contains(&key) {
            core.sched.readied_inflight.insert(key);
        } else {
            // It may have left `inflight` after a read-ahead that skipped it.
            drop(core);
            self.store.bump_tasks();
        }
    }

    /// The pool's active jobs by priority, cached until any job changes.
    pub(crate) async fn jobs_of(&self, pool: &str) -> Result<Arc<Vec<CloudJob>>, Error> {
        let generation = self.store.job_generation();
        if let Some((g, jobs)) = self.core().sched.jobs.get(pool) {
            if *g == generation {
                return Ok(jobs.clone());
            }
        }
        let jobs = Arc::new(self.store.schedulable_jobs(pool).await?);
        self.core().sched.jobs.insert(pool.to_string(), (generation, jobs.clone()));
        Ok(jobs)
    }

    /// Up to `want` of a job's ready tasks that no round holds. They come
    /// from the job's read-ahead queue, refilled from the store (a few hundred
    /// at a time) when it runs dry. The queue is valid while the store's
    /// generation stands still (nothing became ready, no ready task changed),
    /// so a task never starts from a stale document, and a job known to have
    /// nothing ready costs no read.
    /// Only tasks that fit a node of `max_slots` slots are taken (see
    /// `Store::ready_tasks`).
    pub(crate) async fn take_ready(&self, job_id: &str, first: Option<&str>, want: usize, max_slots: u32) -> Result<Vec<CloudTask>, Error> {
        const READ_AHEAD: usize = 256;
        let key = store::key_of(job_id);
        let mut out = Vec::new();
        for refill in [false, true] {
            let generation = self.store.generation();
            if refill {
                // The job's tasks in flight as the read begins: the read may
                // see one as it was before its assignment committed (the
                // scheduler's own writes do not move the generation), even
                // once it has left `inflight`, so they are left out too. One
                // whose assignment fails instead is `readied` (or abandoned),
                // which moves the generation.
                let (held, before): (usize, HashSet<String>) = {
                    let core = self.core();
                    let inflight = &core.sched.inflight;
                    (inflight.len(), inflight.iter().filter(|(j, _)| *j == key).map(|(_, t)| t.clone()).collect())
                };
                let limit = READ_AHEAD.max(want) + held;
                let tasks = self.store.ready_tasks(job_id, limit, max_slots).await?;
                let exhausted = tasks.len() < limit;
                let fresh: VecDeque<CloudTask> = {
                    let mut core = self.core();
                    let inflight = &mut core.sched.inflight;
                    tasks
                        .into_iter()
                        .filter(|t| {
                            let task_key = store::key_of(&t.id);
                            !before.contains(&task_key)
                                && !inflight.contains(&(key.clone(), task_key))
                                && !out.iter().any(|o: &CloudTask| o.id == t.id)
                        })
                        .collect()
                };
                let mut fresh = fresh;
                // The job manager task starts before the job's other tasks.
                if let Some(pos) = fresh.iter().position(|t| first.is_some_and(|f| t.id.eq_ignore_ascii_case(f))) {
                    if let Some(t) = fresh.remove(pos) {
                        fresh.push_front(t);
                    }
                }
                self.core().sched.ready.insert(key.clone(), ReadAhead { generation, max_slots, exhausted, tasks: fresh });
            }
            let mut core = self.core();
            let sched = &mut core.sched;
            let Some(r) = sched.ready.get_mut(&key) else { continue };
            if r.generation != generation || r.max_slots != max_slots {
                sched.ready.remove(&key);
                out.clear();
                continue;
            }
            let inflight = &sched.inflight;
            while out.len() < want {
                let Some(t) = r.tasks.pop_front() else { break };
                if !inflight.contains(&(key.clone(), store::key_of(&t.id))) {
                    out.push(t);
                }
            }
            if out.len() == want || !r.tasks.is_empty() || r.exhausted {
                break;
            }
        }
        Ok(out)
    }
}
