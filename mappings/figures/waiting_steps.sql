-- Referrals waiting for their first visit at the snapshot, region-wide, by the step they wait at
-- (the kind and business status of the open Task of ours that holds their next step, as
-- responsibility.py says; `nobody` when no owner holds it) and by days since the referral was issued:
-- the operators' view of where the queue stands. Patient-chosen and medical waiting left out, as
-- in waiting.sql. Parameters: $at. Reads fig_referral, fig_current (base.sql).
WITH open_ AS (SELECT * FROM fig_current WHERE NOT final),
holder AS (  -- the Task holding the next step; of several (which the rule forbids), the first by kind
    SELECT o.referral, arg_min(o.kind || '/' || coalesce(o.business_status, o.status), o.kind) AS step
    FROM open_ o
    WHERE o.waits_for IS NULL
       OR NOT EXISTS (SELECT 1 FROM open_ w WHERE w.referral = o.referral AND w.kind = o.waits_for)
    GROUP BY o.referral
),
items AS (
    SELECT CASE WHEN r.nobody THEN 'nobody' ELSE coalesce(h.step, 'nobody') END AS step,
           fig_day($at) - fig_day(r.authored_on) AS days
    FROM fig_referral r LEFT JOIN holder h ON h.referral = r.referral
    WHERE r.first_visit IS NULL AND NOT r.closed AND r.waiting_reason IS NULL
)
SELECT step,
       CASE WHEN days <= 30 THEN '0-30' WHEN days <= 60 THEN '31-60' WHEN days <= 90 THEN '61-90' ELSE 'over-90' END
           AS age,
       count(*) AS referrals
FROM items
GROUP BY ALL
ORDER BY step, age;
