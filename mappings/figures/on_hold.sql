-- Time a review waited for others, per reason (the hold reasons of mappings/flow.yaml: on-hold
-- awaiting-supplement waits for the referrer, awaiting-patient for the patient): each interval
-- from the version that put the review on hold to the next version that changed the reason,
-- in calendar days, counted when it ended in the period, at the review's clinic. Reported
-- beside the other figures, never subtracted from them.
-- Parameters: $from, $to. Reads fig_version, fig_review (base.sql).
WITH seq AS (
    SELECT task, version, changed_at,
           CASE WHEN status = 'on-hold' THEN
               CASE business_status WHEN 'awaiting-supplement' THEN 'referrer'
                                    WHEN 'awaiting-patient' THEN 'patient' END END AS reason
    FROM fig_version WHERE kind = 'review'
),
changes AS (
    SELECT * FROM (SELECT *, lag(reason) OVER (PARTITION BY task ORDER BY version) AS before FROM seq)
    WHERE reason IS DISTINCT FROM before
),
intervals AS (
    SELECT s.task, s.reason, s.changed_at AS since,
           (SELECT min(c.changed_at) FROM changes c WHERE c.task = s.task AND c.version > s.version) AS until
    FROM changes s WHERE s.reason IS NOT NULL
),
items AS (
    SELECT r.org, i.reason, fig_day(i.until) - fig_day(i.since) AS days
    FROM intervals i JOIN fig_review r ON r.task = i.task
    WHERE fig_day(i.until) BETWEEN $from AND $to
),
scoped AS (
    SELECT r.org AS scope, i.* FROM items i JOIN fig_rollup r ON r.member = i.org
    UNION ALL BY NAME
    SELECT NULL AS scope, i.* FROM items i
)
SELECT scope, reason, quantile_cont(days, 0.5) AS median_days
FROM scoped
GROUP BY scope, reason;
