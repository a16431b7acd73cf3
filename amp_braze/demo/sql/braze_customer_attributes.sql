-- The demo's Braze profile: one row per customer, the identifier plus standard fields and custom
-- attributes. Runs with polars SQL over customer_profiles, engagement_summary and sources/<name>.
SELECT
    p.amp_id AS external_id,
    p.email,
    p.first_name,
    p.last_name,
    p.phone,
    p.dob,
    p.gender,
    p.country,
    p.home_city,
    CASE WHEN p.email_opt_in THEN 'opted_in'
         WHEN NOT p.email_opt_in THEN 'unsubscribed' END AS email_subscribe,
    -- The newsletter's subscription group (sync profiles_us mirrors it; never an attribute).
    CASE WHEN p.email_opt_in THEN 'subscribed'
         WHEN NOT p.email_opt_in THEN 'unsubscribed' END AS newsletter,
    ROUND(COALESCE(p.lifetime_spend, 0) + COALESCE(p.online_revenue, 0), 2) AS lifetime_value,
    p.orders_count,
    p.loyalty_tier,
    p.points_balance,
    p.last_purchase_date,
    -- Engagement from Braze Currents flows back (null, so not sent, for users with none yet).
    e.email_opens_30d,
    e.email_clicks_30d,
    e.last_email_open_at
FROM customer_profiles AS p
LEFT JOIN engagement_summary AS e ON e.external_user_id = p.amp_id
