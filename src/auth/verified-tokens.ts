/**
 * User tokens already verified, keyed by the whole token string, each kept until its `exp`: a repeated
 * token (every press of a sale) skips the signature check. Bounded: past `maxSize` the oldest entry goes.
 */
export class VerifiedTokens {
  readonly #entries = new Map<string, { userId: string; expiresAtMs: number }>()
  readonly #maxSize: number

  constructor(maxSize: number) {
    this.#maxSize = maxSize
  }

  /** The user id of a token verified before and not expired yet. */
  get(token: string, nowMs: number): string | undefined {
    const entry = this.#entries.get(token)
    if (entry === undefined) return undefined
    if (nowMs < entry.expiresAtMs) return entry.userId
    this.#entries.delete(token)
    return undefined
  }

  remember(token: string, userId: string, expiresAtMs: number): void {
    if (this.#maxSize === 0) return
    if (this.#entries.size >= this.#maxSize) {
      const oldest = this.#entries.keys().next()
      if (oldest.done !== true) this.#entries.delete(oldest.value)
    }
    this.#entries.set(token, { userId, expiresAtMs })
  }

  clear(): void {
    this.#entries.clear()
  }
}
