-- 5: task dependencies. Each dependent task counts its dependencies not
-- yet satisfied (`deps_left`; it is ready at 0); reverse tables find the
-- dependents of a task that becomes satisfied, by id or by a range over
-- integer ids (`range_id`), without expanding ranges.
ALTER TABLE tasks ADD COLUMN deps_left bigint NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN satisfied bigint NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN range_id bigint;
CREATE INDEX tasks_by_range_id ON tasks (job, range_id, satisfied) WHERE range_id IS NOT NULL;
CREATE TABLE task_dep_ids (job text COLLATE "C" NOT NULL, task text COLLATE "C" NOT NULL, dep text COLLATE "C" NOT NULL);
CREATE INDEX task_dep_ids_by_dep ON task_dep_ids (job, dep);
CREATE INDEX task_dep_ids_by_task ON task_dep_ids (job, task);
CREATE TABLE task_dep_ranges (job text COLLATE "C" NOT NULL, task text COLLATE "C" NOT NULL, lo bigint NOT NULL, hi bigint NOT NULL);
CREATE INDEX task_dep_ranges_by_lo ON task_dep_ranges (job, lo);
CREATE INDEX task_dep_ranges_by_task ON task_dep_ranges (job, task);
