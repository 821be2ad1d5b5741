-- How many organisations held each referral (bounces): the distinct directory organisations
-- (clinic, MMRpv unit, coordinator) that owned a Task of ours by the snapshot, a PractitionerRole
-- counting as its organisation, the patient as none. Counted for the referrals that arrived in
-- the period: at a clinic (its review), at the unit (its intake), at a site (arrived at the unit
-- in the period and booked there), in the region (its first Task of ours).
-- Parameters: $from, $to. Reads fig_version, fig_referral (base.sql).
WITH held AS (
    SELECT v.referral, count(DISTINCT v.owner_hsa) AS n
    FROM fig_version v JOIN directory d ON d.hsa_id = v.owner_hsa
    WHERE d.kind IN ('clinic', 'unit', 'site', 'coordinator')
    GROUP BY v.referral
),
items AS (
    SELECT clinic AS scope, referral FROM fig_referral WHERE fig_day(clinic_at) BETWEEN $from AND $to
    UNION ALL
    SELECT unit, referral FROM fig_referral WHERE forwarded AND fig_day(unit_at) BETWEEN $from AND $to
    UNION ALL
    SELECT site, referral FROM fig_referral
    WHERE forwarded AND site IS NOT NULL AND fig_day(unit_at) BETWEEN $from AND $to
    UNION ALL
    SELECT NULL, referral FROM fig_referral WHERE fig_day(arrived_at) BETWEEN $from AND $to
)
SELECT i.scope, coalesce(h.n, 0) AS organisations, count(*) AS referrals
FROM items i LEFT JOIN held h ON h.referral = i.referral
GROUP BY ALL;
