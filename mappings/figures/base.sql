-- The figures' common ground: what every figure file reads, made once per snapshot as temporary
-- tables. Parameters: $at (the snapshot moment). Reads only the tables of adapter/flow/schema.sql.
-- Every rule here is written out in docs/flow.md, "The figures".

-- A day is a Europe/Stockholm date: the care guarantee and the working days count local days.
CREATE OR REPLACE TEMP MACRO fig_day(ts) AS CAST(timezone('Europe/Stockholm', ts) AS DATE);
-- Working days after a's day up to and including b's day (a's own day never counts: the
-- deadline convention of adapter/workflow/calendar.py; decided on the third working day = 3).
CREATE OR REPLACE TEMP TABLE fig_workday AS
SELECT day, count(*) FILTER (WHERE working) OVER (ORDER BY day) AS n FROM calendar;
CREATE OR REPLACE TEMP MACRO fig_working_days(a, b) AS
    (SELECT n FROM fig_workday WHERE day = fig_day(b)) - (SELECT n FROM fig_workday WHERE day = fig_day(a));

-- The organisations figures are counted for (directory kinds clinic, unit, site) and what each
-- counts: itself, and for the MMRpv unit its sites too (a site is a Location of the unit).
CREATE OR REPLACE TEMP TABLE fig_rollup AS
SELECT hsa_id AS member, hsa_id AS org FROM directory WHERE kind IN ('clinic', 'unit', 'site')
UNION ALL
SELECT s.hsa_id, u.hsa_id FROM directory s, directory u WHERE s.kind = 'site' AND u.kind = 'unit';

-- Every Task version known at the snapshot, with its row of mappings/task-states.yaml and the
-- organisation that owned it (a PractitionerRole counts as its organisation; a Patient is none).
-- A version without a row of the table is open when its status is (adapter/workflow/tasks.OPEN).
CREATE OR REPLACE TEMP TABLE fig_version AS
WITH states AS (
    SELECT kind, status, business_status, bool_or(final) AS final, bool_or(ends) AS ends,
           any_value(waits_for) AS waits_for
    FROM task_state GROUP BY ALL
)
SELECT v.task, v.version, v.referral, v.kind, v.status, v.business_status, v.owner, v.owner_type,
       v.authored_on, v.period_start, v.period_end, v.execution_end, v.changed_at,
       coalesce(ts.final, v.status NOT IN ('draft', 'requested', 'received', 'accepted', 'ready',
                                          'in-progress', 'on-hold')) AS final,
       coalesce(ts.ends, false) AS ends,
       ts.waits_for,
       CASE v.owner_type WHEN 'Organization' THEN o.hsa_id WHEN 'PractitionerRole' THEN ro.hsa_id END AS owner_hsa
FROM mmr_task_version v
LEFT JOIN states ts
       ON ts.kind = v.kind AND ts.status = v.status AND ts.business_status IS NOT DISTINCT FROM v.business_status
LEFT JOIN mmr_organization o ON v.owner_type = 'Organization' AND o.organization = v.owner
LEFT JOIN mmr_practitioner_role pr ON v.owner_type = 'PractitionerRole' AND pr.role = v.owner
LEFT JOIN mmr_organization ro ON ro.organization = pr.organization
WHERE v.changed_at <= $at;

-- The version of each Task current at the snapshot: the highest version changed at or before it.
CREATE OR REPLACE TEMP TABLE fig_current AS
SELECT * FROM fig_version QUALIFY row_number() OVER (PARTITION BY task ORDER BY version DESC) = 1;

-- Who holds each referral at the snapshot, the definition of adapter/workflow/responsibility.py:
-- the open Tasks not waiting for an open Task of another kind hold the next step; nobody is
-- responsible when none of them has an owner and the Task changed last does not end the journey.
CREATE OR REPLACE TEMP TABLE fig_holding AS
WITH open_ AS (SELECT * FROM fig_current WHERE NOT final),
holders AS (
    SELECT o.* FROM open_ o
    WHERE o.waits_for IS NULL
       OR NOT EXISTS (SELECT 1 FROM open_ w WHERE w.referral = o.referral AND w.kind = o.waits_for)
),
last_changed AS (
    SELECT referral, arg_max(ends, (changed_at, version)) AS ends FROM fig_current GROUP BY referral
)
SELECT r.referral,
       EXISTS (SELECT 1 FROM holders h WHERE h.referral = r.referral AND h.owner IS NOT NULL) AS held,
       coalesce((SELECT l.ends FROM last_changed l WHERE l.referral = r.referral), false) AS ended
FROM mmr_referral r;

-- One row per referral issued by the snapshot (a draft or one entered in error is the referrer's
-- own): its clinic, whether it was forwarded, its first visit, where it is counted while waiting.
CREATE OR REPLACE TEMP TABLE fig_referral AS
WITH visit AS (  -- a visit that took place: booked, arrived, checked in or fulfilled, started by the snapshot
    SELECT a.referral, a.start,
           coalesce(CASE WHEN ds.kind = 'site' THEN l.hsa_id END, ao.hsa_id) AS org
    FROM mmr_appointment a
    LEFT JOIN mmr_location l ON l.location = a.location
    LEFT JOIN directory ds ON ds.hsa_id = l.hsa_id
    LEFT JOIN mmr_organization ao ON ao.organization = a.organization
    WHERE a.status IN ('booked', 'arrived', 'checked-in', 'fulfilled') AND a.start <= $at
),
first_visit AS (SELECT referral, min(start) AS start, arg_min(org, start) AS org FROM visit GROUP BY referral),
booked_site AS (  -- the site of the booking standing at the snapshot (the next one to come)
    SELECT a.referral, arg_min(l.hsa_id, a.start) AS site
    FROM mmr_appointment a JOIN mmr_location l ON l.location = a.location
    JOIN directory d ON d.hsa_id = l.hsa_id AND d.kind = 'site'
    WHERE a.status = 'booked' AND a.start > $at
    GROUP BY a.referral
),
waiting_reason AS (  -- as the Appointment records it now (its status and start are read so too:
    -- the store keeps only its current version, and meta.lastUpdated is the server's moment of the
    -- last write, not of the cancellation, so it cannot date the reason); patient-chosen outranks medical
    SELECT referral, min(waiting_reason) FILTER (WHERE waiting_reason = 'patient-chosen') AS chosen,
           min(waiting_reason) FILTER (WHERE waiting_reason = 'medical') AS medical
    FROM mmr_appointment WHERE waiting_reason IS NOT NULL GROUP BY referral
),
clinic AS (  -- the specialist clinic that owned the review (first owned), else the referral's performer
    SELECT v.referral, arg_min(v.owner_hsa, (v.changed_at, v.version)) AS hsa,
           min(coalesce(v.authored_on, v.changed_at)) AS at
    FROM fig_version v JOIN directory d ON d.hsa_id = v.owner_hsa AND d.kind = 'clinic'
    WHERE v.kind = 'review' GROUP BY v.referral
),
unit AS (  -- forwarded: an intake Task exists; the MMRpv unit that owned it
    SELECT v.referral, arg_min(d.hsa_id, (v.changed_at, v.version)) AS hsa,
           min(coalesce(v.authored_on, v.changed_at)) AS at
    FROM fig_version v LEFT JOIN directory d ON d.hsa_id = v.owner_hsa AND d.kind = 'unit'
    WHERE v.kind = 'intake' GROUP BY v.referral
),
arrival AS (SELECT referral, min(coalesce(authored_on, changed_at)) AS at FROM fig_version GROUP BY referral),
closed AS (  -- a Task current at the snapshot ends the journey (a standing booking does not end the wait)
    SELECT DISTINCT referral FROM fig_current
    WHERE ends AND NOT (kind = 'booking' AND business_status = 'booked')
)
SELECT r.referral, r.identifier, r.subject, r.authored_on,
       coalesce(c.hsa, po.hsa_id) AS clinic,
       c.at AS clinic_at, a.at AS arrived_at,
       u.referral IS NOT NULL AS forwarded, u.at AS unit_at,
       coalesce(u.hsa, (SELECT min(hsa_id) FROM directory WHERE kind = 'unit')) AS unit,
       fv.start AS first_visit,
       coalesce(fv.org, CASE WHEN u.referral IS NOT NULL THEN u.hsa ELSE coalesce(c.hsa, po.hsa_id) END) AS first_visit_org,
       CASE WHEN u.referral IS NOT NULL THEN coalesce(b.site, u.hsa) ELSE coalesce(c.hsa, po.hsa_id) END AS org_now,
       coalesce(b.site, CASE WHEN fd.kind = 'site' THEN fv.org END) AS site,
       CASE WHEN w.chosen IS NOT NULL THEN 'patient-chosen' WHEN w.medical IS NOT NULL THEN 'medical' END AS waiting_reason,
       cl.referral IS NOT NULL AS closed,
       NOT h.held AND NOT h.ended AS nobody
FROM mmr_referral r
LEFT JOIN mmr_organization po ON po.organization = r.performer
LEFT JOIN clinic c ON c.referral = r.referral
LEFT JOIN unit u ON u.referral = r.referral
LEFT JOIN first_visit fv ON fv.referral = r.referral
LEFT JOIN directory fd ON fd.hsa_id = fv.org
LEFT JOIN arrival a ON a.referral = r.referral
LEFT JOIN booked_site b ON b.referral = r.referral
LEFT JOIN waiting_reason w ON w.referral = r.referral
LEFT JOIN closed cl ON cl.referral = r.referral
JOIN fig_holding h ON h.referral = r.referral
WHERE coalesce(r.status, '') NOT IN ('draft', 'entered-in-error') AND r.authored_on <= $at;

-- One row per review Task: its clinic, arrival, deadline (restriction.period.end, as last set),
-- decision (the first version decided, forwarded or rejected: executionPeriod.end, else the
-- change) and whether it is still open at the snapshot.
CREATE OR REPLACE TEMP TABLE fig_review AS
SELECT v.task, any_value(r.clinic) AS org,
       min(coalesce(v.period_start, v.authored_on, v.changed_at)) AS arrival,
       arg_max(v.period_end, v.version) FILTER (WHERE v.period_end IS NOT NULL) AS deadline,
       min(coalesce(v.execution_end, v.changed_at))
           FILTER (WHERE v.business_status IN ('decided', 'forwarded', 'rejected')) AS decided_at,
       min(v.changed_at) FILTER (WHERE v.business_status = 'rejected') AS rejected_at,
       any_value(r.subject) AS subject, any_value(r.referral) AS referral,
       bool_and(NOT c.final) AS open_now
FROM fig_version v
JOIN fig_referral r ON r.referral = v.referral
JOIN fig_current c ON c.task = v.task
WHERE v.kind = 'review'
GROUP BY v.task;
