/**
 * Test-only: loaded with `node --import` into a server process to shift its clock by TEST_CLOCK_SHIFT_MS
 * (Date.now() and `new Date()`), as a machine whose clock runs ahead or behind. The service never reads this
 * variable: the point of the test using it is that the issue window is decided on Redis's clock.
 */
const shift = Number(process.env.TEST_CLOCK_SHIFT_MS ?? 0)
if (shift !== 0) {
  const RealDate = Date
  class ShiftedDate extends RealDate {
    constructor(...args: [] | [string | number | Date]) {
      if (args.length === 0) super(RealDate.now() + shift)
      else super(args[0])
    }
    static override now(): number {
      return RealDate.now() + shift
    }
  }
  globalThis.Date = ShiftedDate as DateConstructor
}
