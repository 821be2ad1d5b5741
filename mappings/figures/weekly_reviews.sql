-- Reviews decided in the period per clinic and ISO week (Stockholm dates), with those decided at
-- or before their deadline: the page's weekly share within the deadline.
-- Parameters: $from, $to. Reads fig_review (base.sql).
SELECT org AS organization, strftime(fig_day(decided_at), '%G-W%V') AS week,
       count(*) AS decided, count(*) FILTER (WHERE decided_at <= deadline) AS within_deadline
FROM fig_review
WHERE org IS NOT NULL AND fig_day(decided_at) BETWEEN $from AND $to
GROUP BY ALL
ORDER BY organization, week;
