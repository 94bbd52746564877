-- 3: exit codes as an indexed column (`executionInfo/exitCode` filters).
-- The index is partial: tasks that have not run cost it nothing.
ALTER TABLE tasks ADD COLUMN exit_code bigint;
CREATE INDEX tasks_by_exit_code ON tasks (job, exit_code) WHERE exit_code IS NOT NULL;
