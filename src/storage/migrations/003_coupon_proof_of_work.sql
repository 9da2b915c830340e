-- Proof of work per coupon: when set, each issuance request must carry a solved ALTCHA challenge whose
-- secret number is drawn from 1..pow_max_number (the difficulty). NULL: off (every coupon before this).
ALTER TABLE coupons
  ADD COLUMN pow_max_number integer CHECK (pow_max_number BETWEEN 1000 AND 10000000);
