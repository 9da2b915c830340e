-- Steering a live sale (PATCH /admin/coupons/{id}): a sale can be paused, and every change an admin makes
-- to a coupon is kept, with who made it, for GET /admin/coupons/{id}/history.
ALTER TABLE coupons ADD COLUMN IF NOT EXISTS paused boolean NOT NULL DEFAULT false;

-- No foreign key: the history of a deleted coupon (its deletion included) is kept.
CREATE TABLE IF NOT EXISTS coupon_changes (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  coupon_id bigint NOT NULL,
  at timestamptz NOT NULL DEFAULT clock_timestamp(),
  admin text NOT NULL,
  -- { field: { from, to } } for a PATCH, { deleted: true } for a DELETE.
  change jsonb NOT NULL
);

CREATE INDEX IF NOT EXISTS coupon_changes_by_coupon ON coupon_changes (coupon_id, id);
