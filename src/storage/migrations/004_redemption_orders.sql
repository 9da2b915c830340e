-- Redemption follows the order: a coupon may ask for a minimum order amount, a redemption carries the
-- shop's order id (a retried call finds its own earlier success), and a refunded order cancels it.
ALTER TABLE coupons ADD COLUMN min_order_amount integer CHECK (min_order_amount BETWEEN 1 AND 1000000000);

-- The user coupon keeps its current redemption (cleared by a cancellation, which leaves cancelled_at).
ALTER TABLE user_coupons ADD COLUMN order_id text, ADD COLUMN cancelled_at timestamptz;

-- One row per redemption, cancelled ones kept: the history of every redeem/cancel cycle.
CREATE TABLE redemptions (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_coupon_id bigint NOT NULL,
  -- NULL only for redemptions made before order ids existed (copied below).
  order_id text CHECK (char_length(order_id) BETWEEN 1 AND 100),
  order_amount integer NOT NULL,
  discount_amount integer NOT NULL,
  redeemed_at timestamptz NOT NULL DEFAULT now(),
  cancelled_at timestamptz
);

-- At most one live redemption per user coupon, whatever the application does: "exactly once" from Postgres.
CREATE UNIQUE INDEX redemptions_one_live ON redemptions (user_coupon_id) WHERE cancelled_at IS NULL;
-- A retried call looks up its order on its coupon.
CREATE INDEX redemptions_by_order ON redemptions (user_coupon_id, order_id);

INSERT INTO redemptions (user_coupon_id, order_amount, discount_amount, redeemed_at)
SELECT id, coalesce(order_amount, 0), coalesce(discount_amount, 0), redeemed_at
FROM user_coupons WHERE redeemed_at IS NOT NULL;
