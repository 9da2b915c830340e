-- Retention (issue 18): an ended sale's Redis state is released to Postgres.
-- released_at: the sale's decisions and counters are in Postgres and every read answers from there;
-- redis_freed_at: its Redis keys are deleted too (a release interrupted in between is finished later).
-- final_*: the Redis counters the stats need, as they were at the release.
ALTER TABLE coupons
  ADD COLUMN released_at timestamptz,
  ADD COLUMN redis_freed_at timestamptz,
  ADD COLUMN final_seq bigint,
  ADD COLUMN final_stock bigint,
  ADD COLUMN final_sold_out bigint,
  ADD COLUMN final_resolved_sold_out bigint,
  ADD COLUMN final_requested bigint,
  ADD COLUMN final_loaded boolean;

-- The sales still holding Redis state, by end: what the release sweep reads.
CREATE INDEX coupons_holding_redis ON coupons (issue_ends_at) WHERE redis_freed_at IS NULL;

-- The decisions Postgres has no row for (queue's SOLD_OUT outcomes, any record a row does not tell),
-- copied from Redis at the release so a status read answers them afterwards.
CREATE TABLE issuance_outcomes (
  coupon_id bigint NOT NULL REFERENCES coupons (id),
  user_id text NOT NULL,
  status text NOT NULL CHECK (status IN ('PENDING', 'ACCEPTED', 'ISSUED', 'SOLD_OUT')),
  position bigint NOT NULL,
  requested_at timestamptz NOT NULL,
  decided_at timestamptz,
  user_coupon_id bigint,
  PRIMARY KEY (coupon_id, user_id)
);
