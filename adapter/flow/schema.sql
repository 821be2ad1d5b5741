-- The flow store's tables (DuckDB): the rows of the MMR ViewDefinitions in profiles/views/ and the
-- adapter's own data they are read with. A cache derived from the FHIR server, never a source of
-- truth: `mmr-adapter flow --rebuild` makes it anew. The figures (mappings/figures/*.sql) read only
-- these tables. Moments are TIMESTAMPTZ; days are counted on Europe/Stockholm dates.

CREATE TABLE IF NOT EXISTS mmr_referral (
    referral VARCHAR PRIMARY KEY,       -- the ServiceRequest's resource key
    identifier VARCHAR,                 -- its business identifier
    status VARCHAR,
    authored_on TIMESTAMPTZ,            -- the care guarantee's clock starts here, forwarding or not
    performer VARCHAR,                  -- Organization key: the receiving clinic
    subject VARCHAR,                    -- Patient key: re-referrals are found by it
    last_updated TIMESTAMPTZ
);

-- Every version of every Task of ours about an MMR referral: owners, holds and decisions over time.
CREATE TABLE IF NOT EXISTS mmr_task_version (
    task VARCHAR,
    version INTEGER,
    referral VARCHAR,
    kind VARCHAR,                       -- the kind in mappings/task-states.yaml (routing, review, ...)
    status VARCHAR,
    business_status VARCHAR,
    owner VARCHAR,                      -- reference key of Task.owner
    owner_type VARCHAR,                 -- Organization, PractitionerRole, Patient, ...
    authored_on TIMESTAMPTZ,
    last_modified TIMESTAMPTZ,
    period_start TIMESTAMPTZ,           -- restriction.period
    period_end TIMESTAMPTZ,             -- the review deadline, the booking deadline, the due date
    execution_start TIMESTAMPTZ,
    execution_end TIMESTAMPTZ,          -- the review's decision
    decision VARCHAR,                   -- MMRpv, MMRsv or NULL
    changed_at TIMESTAMPTZ,             -- coalesce(last_modified, meta.lastUpdated): one time base
    PRIMARY KEY (task, version)
);

CREATE TABLE IF NOT EXISTS mmr_appointment (
    appointment VARCHAR PRIMARY KEY,
    referral VARCHAR,
    status VARCHAR,
    start TIMESTAMPTZ,
    location VARCHAR,                   -- Location key
    organization VARCHAR,               -- Organization key: the Location's, the PractitionerRole's, or a participant's
    waiting_reason VARCHAR,             -- patient-chosen, medical or NULL (mappings/flow.yaml)
    last_updated TIMESTAMPTZ,
    practitioner_role VARCHAR           -- PractitionerRole key: a clinic's own visit names its clinician
);

CREATE TABLE IF NOT EXISTS mmr_careplan (
    careplan VARCHAR PRIMARY KEY,
    referral VARCHAR,
    status VARCHAR,
    period_start TIMESTAMPTZ,
    period_end TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS mmr_organization (organization VARCHAR PRIMARY KEY, hsa_id VARCHAR, name VARCHAR);
CREATE TABLE IF NOT EXISTS mmr_practitioner_role (role VARCHAR PRIMARY KEY, organization VARCHAR);
CREATE TABLE IF NOT EXISTS mmr_location (location VARCHAR PRIMARY KEY, hsa_id VARCHAR, organization VARCHAR);

-- The adapter's own data, written anew on every refresh.
CREATE TABLE IF NOT EXISTS calendar (day DATE PRIMARY KEY, working BOOLEAN);
CREATE TABLE IF NOT EXISTS task_state (
    kind VARCHAR, status VARCHAR, business_status VARCHAR, final BOOLEAN, ends BOOLEAN, waits_for VARCHAR
);
CREATE TABLE IF NOT EXISTS directory (hsa_id VARCHAR PRIMARY KEY, name VARCHAR, kind VARCHAR, ord INTEGER);
CREATE TABLE IF NOT EXISTS flow_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
