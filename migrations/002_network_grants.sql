-- Network grants: host names a job may reach through its egress proxy (empty: no network at all).
ALTER TABLE scheduled_jobs ADD COLUMN allow_hosts text[] NOT NULL DEFAULT '{}';
