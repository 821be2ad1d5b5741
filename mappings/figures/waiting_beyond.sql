-- The referrals waiting beyond the care guarantee at the snapshot (more calendar days since the
-- referral was issued than $guarantee_days, the region's limit), by business identifier, where
-- they wait: the subject list of the Measure mmr-waiting-beyond-guarantee. Patient-chosen and
-- medical waiting are outside the guarantee, as in waiting.sql.
-- Parameters: $at, $guarantee_days. Reads fig_referral (base.sql).
WITH items AS (
    SELECT org_now AS org, identifier FROM fig_referral
    WHERE first_visit IS NULL AND NOT closed AND waiting_reason IS NULL
      AND fig_day($at) - fig_day(authored_on) > $guarantee_days
),
scoped AS (
    SELECT r.org AS scope, i.* FROM items i JOIN fig_rollup r ON r.member = i.org
    UNION ALL BY NAME
    SELECT NULL AS scope, i.* FROM items i
)
SELECT scope, identifier FROM scoped ORDER BY identifier;
