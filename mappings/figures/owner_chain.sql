-- One referral's chain of owners: each organisation (a PractitionerRole counting as its
-- organisation, the patient as none) that held an open Task of ours, in the order it took the
-- referral, from then until the next one took it, or the journey ended, or (still holding) the
-- snapshot. Parameters: $identifier, $at. Reads fig_version, fig_referral (base.sql).
WITH holding AS (
    SELECT v.owner_hsa AS organization, d.name, v.changed_at, v.version, v.task
    FROM fig_version v
    JOIN fig_referral r ON r.referral = v.referral
    JOIN directory d ON d.hsa_id = v.owner_hsa
    WHERE r.identifier = $identifier AND NOT v.final
),
islands AS (
    SELECT * FROM (
        SELECT *, lag(organization) OVER (ORDER BY changed_at, task, version) AS before FROM holding
    ) WHERE organization IS DISTINCT FROM before
),
ended AS (
    SELECT max(c.changed_at) AS moment
    FROM fig_current c JOIN fig_referral r ON r.referral = c.referral JOIN fig_holding h ON h.referral = c.referral
    WHERE r.identifier = $identifier AND h.ended AND NOT h.held
),
chain AS (
    SELECT organization, name, changed_at AS since,
           coalesce(lead(changed_at) OVER (ORDER BY changed_at, task, version),
                    CASE WHEN row_number() OVER (ORDER BY changed_at DESC, task DESC, version DESC) = 1
                         THEN (SELECT moment FROM ended) END) AS until
    FROM islands
)
SELECT organization, name, since, until, fig_day(coalesce(until, $at)) - fig_day(since) AS days
FROM chain
ORDER BY since;
