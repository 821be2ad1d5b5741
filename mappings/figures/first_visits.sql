-- First visits that took place in the period (Genomförda), where they took place (the clinic for
-- MMRsv, the site for MMRpv), with the calendar days from the referral's issue (authoredOn, never
-- restarted by forwarding) to the visit, against the care guarantee. A referral with recorded
-- patient-chosen or medical waiting is left out, as the national waiting-time database does.
-- Parameters: $from, $to, $guarantee_days. Reads fig_referral (base.sql).
WITH items AS (
    SELECT first_visit_org AS org, fig_day(first_visit) - fig_day(authored_on) AS days
    FROM fig_referral
    WHERE first_visit IS NOT NULL AND waiting_reason IS NULL
      AND fig_day(first_visit) BETWEEN $from AND $to
),
scoped AS (
    SELECT r.org AS scope, i.* FROM items i JOIN fig_rollup r ON r.member = i.org
    UNION ALL BY NAME
    SELECT NULL AS scope, i.* FROM items i
)
SELECT scope,
       count(*) AS first_visits,
       quantile_cont(days, 0.5) AS first_visit_median_days,
       quantile_cont(days, 0.9) AS first_visit_p90_days,
       max(days) AS first_visit_max_days,
       count(*) FILTER (WHERE days <= $guarantee_days) AS first_visits_within_guarantee
FROM scoped
GROUP BY scope;
