-- Rejections in the period followed by a new MMR referral for the same patient, issued after the
-- rejection and within 12 months of it (and by the snapshot), counted at the rejecting clinic.
-- Parameters: $from, $to. Reads fig_review, fig_referral (base.sql).
WITH items AS (
    SELECT r.org, r.task
    FROM fig_review r
    WHERE fig_day(r.rejected_at) BETWEEN $from AND $to
      AND EXISTS (
          SELECT 1 FROM fig_referral n
          WHERE n.subject = r.subject AND n.referral <> r.referral
            AND n.authored_on > r.rejected_at AND n.authored_on <= r.rejected_at + INTERVAL 12 MONTH
      )
),
scoped AS (
    SELECT r.org AS scope, i.* FROM items i JOIN fig_rollup r ON r.member = i.org
    UNION ALL BY NAME
    SELECT NULL AS scope, i.* FROM items i
)
SELECT scope, count(*) AS re_referrals_after_rejection FROM scoped GROUP BY scope;
