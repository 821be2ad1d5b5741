-- Reviews at each specialist clinic (step 5): decided in the period, of those at or before their
-- deadline, the median working days from arrival to decision, and open reviews past their
-- deadline at the snapshot (on hold or not: waiting for others never moves the deadline).
-- Parameters: $from, $to (dates, inclusive), $at. Reads fig_review (base.sql).
WITH items AS (
    SELECT org, deadline, decided_at, open_now,
           fig_day(decided_at) BETWEEN $from AND $to AS in_period,
           fig_working_days(arrival, decided_at) AS working_days
    FROM fig_review
),
scoped AS (
    SELECT r.org AS scope, i.* FROM items i JOIN fig_rollup r ON r.member = i.org
    UNION ALL BY NAME
    SELECT NULL AS scope, i.* FROM items i
)
SELECT scope,
       count(*) FILTER (WHERE in_period) AS reviews_decided,
       count(*) FILTER (WHERE in_period AND decided_at <= deadline) AS reviews_within_deadline,
       quantile_cont(working_days, 0.5) FILTER (WHERE in_period) AS review_median_working_days,
       count(*) FILTER (WHERE open_now AND deadline < $at) AS reviews_overdue_now
FROM scoped
GROUP BY scope;
