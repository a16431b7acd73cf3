-- One row per customer: the identifier and what Braze should hold (key-local, so it runs in
-- shards: see docs/scale.md).
SELECT
    p.customer_id AS external_id,
    p.email,
    p.first_name,
    p.last_name,
    e.email_opens_30d
FROM customer_profiles AS p
LEFT JOIN engagement_summary AS e ON e.external_user_id = p.customer_id
