-- The tables postgres-es 0.5 reads and writes (its db/init.sql), created at start-up if
-- missing. One table holds every aggregate's events; cqrs-es's optimistic concurrency is
-- the primary key: a second writer of the same (aggregate, sequence) gets a unique
-- violation, which postgres-es turns into AggregateConflict.
CREATE TABLE IF NOT EXISTS events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- Only used with a snapshot store (postgres_snapshot_cqrs); kept for the schema's sake.
CREATE TABLE IF NOT EXISTS snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- The PostgresViewRepository of the delivery status view.
CREATE TABLE IF NOT EXISTS delivery_status_view
(
    view_id text                        NOT NULL,
    version bigint CHECK (version >= 0) NOT NULL,
    payload json                        NOT NULL,
    PRIMARY KEY (view_id)
);
