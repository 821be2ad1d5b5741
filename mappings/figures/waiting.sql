-- Referrals waiting for their first visit at the snapshot (Väntande), by calendar days since the
-- referral was issued (ServiceRequest.authoredOn: forwarding never restarts the clock), counted
-- where the referral is: the clinic until forwarded, then the MMRpv site booked, else the unit.
-- Waiting by the patient's choice or for medical reasons (recorded on an Appointment) is counted
-- apart and left out of the rest. A referral closed before its first visit waits for nothing.
-- Parameters: $at. Reads fig_referral (base.sql).
WITH items AS (
    SELECT org_now AS org, waiting_reason, fig_day($at) - fig_day(authored_on) AS days
    FROM fig_referral
    WHERE first_visit IS NULL AND NOT closed
),
scoped AS (
    SELECT r.org AS scope, i.* FROM items i JOIN fig_rollup r ON r.member = i.org
    UNION ALL BY NAME
    SELECT NULL AS scope, i.* FROM items i
)
SELECT scope,
       count(*) FILTER (WHERE waiting_reason IS NULL) AS waiting_now,
       count(*) FILTER (WHERE waiting_reason IS NULL AND days <= 30) AS waiting_0_30,
       count(*) FILTER (WHERE waiting_reason IS NULL AND days BETWEEN 31 AND 60) AS waiting_31_60,
       count(*) FILTER (WHERE waiting_reason IS NULL AND days BETWEEN 61 AND 90) AS waiting_61_90,
       count(*) FILTER (WHERE waiting_reason IS NULL AND days > 90) AS waiting_over_90,
       count(*) FILTER (WHERE waiting_reason = 'patient-chosen') AS waiting_patient_chosen,
       count(*) FILTER (WHERE waiting_reason = 'medical') AS waiting_medical
FROM scoped
GROUP BY scope;
