-- Coupons and the coupons issued to users.
-- The stock guard lives in the database itself: issued_count can never pass quantity,
-- whatever Redis believes, so a lost or rebuilt Redis can never over-issue.
CREATE TABLE coupons (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
  discount jsonb NOT NULL,
  quantity integer NOT NULL CHECK (quantity BETWEEN 1 AND 10000000),
  issued_count integer NOT NULL DEFAULT 0,
  issue_starts_at timestamptz NOT NULL,
  issue_ends_at timestamptz NOT NULL,
  valid_days integer CHECK (valid_days BETWEEN 1 AND 3650),
  valid_until timestamptz,
  issue_mode text NOT NULL CHECK (issue_mode IN ('sync', 'queue', 'stream', 'kafka')),
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT coupons_issued_within_quantity CHECK (issued_count BETWEEN 0 AND quantity),
  CONSTRAINT coupons_window_ordered CHECK (issue_ends_at > issue_starts_at),
  CONSTRAINT coupons_has_validity CHECK (valid_days IS NOT NULL OR valid_until IS NOT NULL)
);

-- Finds the coupons whose issuance is running or recent, for the workers.
CREATE INDEX coupons_issue_window ON coupons (issue_ends_at, issue_starts_at);

CREATE TABLE user_coupons (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  coupon_id bigint NOT NULL REFERENCES coupons (id),
  user_id text NOT NULL,
  -- The admission number (1-based arrival order) the user got when the request was accepted.
  position bigint,
  requested_at timestamptz NOT NULL,
  issued_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  redeemed_at timestamptz,
  order_amount integer,
  discount_amount integer,
  -- One coupon per user: the last line of defence against duplicates from any mode or retry.
  CONSTRAINT user_coupons_one_per_user UNIQUE (coupon_id, user_id)
);

CREATE INDEX user_coupons_by_user ON user_coupons (user_id, issued_at DESC);
