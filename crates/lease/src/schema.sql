-- One lease per logical service, in the service's own database (see ordo-lease).
CREATE TABLE IF NOT EXISTS ordo_lease (
    service       text        PRIMARY KEY,
    holder        text        NOT NULL,
    -- Grows on every change of holder; checked by every write of the active replica.
    fencing_token bigint      NOT NULL,
    -- Judged with the database's clock only.
    expires_at    timestamptz NOT NULL,
    acquired_at   timestamptz NOT NULL,
    renewed_at    timestamptz NOT NULL
);
