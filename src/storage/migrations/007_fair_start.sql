-- Fair start (issue 19): a pre-queue before the issue window, its shuffle seed (committed before the
-- pre-queue opens, revealed at the start), and the public order log written once the sale is over.
ALTER TABLE coupons
  ADD COLUMN prequeue_starts_at timestamptz,
  ADD COLUMN prequeue_order text CHECK (prequeue_order IN ('arrival', 'shuffle')),
  -- 32 random bytes; secret until issue_starts_at, then shown on GET /coupons/{id}.
  ADD COLUMN prequeue_seed bytea,
  -- hex SHA-256 of the seed, public from the pre-queue's opening.
  ADD COLUMN prequeue_seed_commitment text,
  -- The order log's salt: each user appears as hex SHA-256(salt || userId), the salt shown with the log.
  ADD COLUMN order_log_salt bytea,
  ADD CONSTRAINT coupons_prequeue_before_start CHECK (
    prequeue_starts_at IS NULL OR (prequeue_starts_at < issue_starts_at AND prequeue_order IS NOT NULL)
  );

-- The public order log of a coupon, written once the sale is over: every user who got a position or a
-- pre-queue place, named by hex SHA-256(salt || userId), and how it ended.
CREATE TABLE coupon_order_log (
  coupon_id bigint NOT NULL REFERENCES coupons (id),
  user_hash text NOT NULL,
  -- null for a pre-queued user resolved SOLD_OUT at the start (never given a position)
  position bigint,
  outcome text NOT NULL CHECK (outcome IN ('ISSUED', 'SOLD_OUT')),
  -- Pre-queued users only: their arrival place and, for `shuffle`, hex HMAC-SHA256(seed, userId).
  prequeue_place bigint,
  shuffle_key text,
  PRIMARY KEY (coupon_id, user_hash)
);
