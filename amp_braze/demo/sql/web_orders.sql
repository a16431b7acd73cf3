-- The demo's order stream: each web order once, as ecommerce.order_placed, to the customer the
-- order's account belongs to (identity_clusters maps a feed's record id to its amp_id).
SELECT
    c.amp_id AS external_id,
    o.order_id AS event_id,
    o.placed_at AS time,
    o.order_id,
    o.total AS total_value,
    o.currency,
    o.products,
    'web' AS source,
    o.channel
FROM sources_web_orders AS o
JOIN identity_clusters AS c ON c.source = 'ecommerce' AND c.record_id = o.account_id
