-- The foreign key user_coupons.coupon_id -> coupons ran a referential-integrity trigger for every inserted
-- row: about a third of a 2,000-row issuing batch. The writers' insert already joins the coupon row it holds
-- locked (a row can only be written for an existing coupon), and coupons are never deleted, so the
-- constraint guarded nothing the hot path does not already guarantee.
ALTER TABLE user_coupons DROP CONSTRAINT IF EXISTS user_coupons_coupon_id_fkey;
