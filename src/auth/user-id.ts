/** Who a user is: the id every token must name, wherever the token comes from. */
export const USER_ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/

/** The rule in words, for refusals. */
export const USER_ID_RULE = 'a user id of 1-64 characters A-Za-z0-9._:-'

export function isUserId(value: unknown): value is string {
  return typeof value === 'string' && USER_ID_PATTERN.test(value)
}
