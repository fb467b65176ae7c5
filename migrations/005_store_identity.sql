-- An identity for this database, put on every container a runner starts for it, so that runners of
-- different databases sharing one Docker engine never take each other's containers for orphans.
CREATE TABLE runner_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
