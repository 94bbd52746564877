-- 4: when each completed task's directory is due for deletion (retentionTime).
ALTER TABLE tasks ADD COLUMN cleanup_at text COLLATE "C";
CREATE INDEX tasks_by_cleanup ON tasks (cleanup_at) WHERE cleanup_at IS NOT NULL;
