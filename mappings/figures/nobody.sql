-- The referrals nobody is responsible for at the snapshot (adapter/workflow/responsibility.py's
-- rule, in base.sql's fig_holding), by business identifier, where they are counted.
-- Must be empty. Parameters: none beyond base.sql's. Reads fig_referral (base.sql).
WITH items AS (SELECT org_now AS org, identifier FROM fig_referral WHERE nobody),
scoped AS (
    SELECT r.org AS scope, i.* FROM items i JOIN fig_rollup r ON r.member = i.org
    UNION ALL BY NAME
    SELECT NULL AS scope, i.* FROM items i
)
SELECT scope, identifier FROM scoped ORDER BY identifier;
