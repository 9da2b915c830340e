import type { Issuance } from '../../domain/coupon.ts'
import type { DecisionMessage } from './decisions.ts'
import { decodeRecord, toIssuance } from './record.ts'

type Listener = (issuance: Issuance) => void

/** Fans decisions published by any worker out to the SSE connections of this process, by user. */
export class DecisionHub {
  private readonly listeners = new Map<string, Set<Listener>>()

  subscribe(userId: string, listener: Listener): () => void {
    let set = this.listeners.get(userId)
    if (set === undefined) {
      set = new Set()
      this.listeners.set(userId, set)
    }
    set.add(listener)
    return () => {
      set.delete(listener)
      if (set.size === 0) this.listeners.delete(userId)
    }
  }

  /** A published decision message: parsed only if this process has SSE listeners, decoded only for them. */
  dispatch(message: string): void {
    if (this.listeners.size === 0) return
    const { couponId, pairs } = JSON.parse(message) as DecisionMessage
    for (let i = 0; i < pairs.length; i += 2) {
      const listeners = this.listeners.get(pairs[i]!)
      if (listeners === undefined) continue
      const issuance = toIssuance(couponId, pairs[i]!, decodeRecord(pairs[i + 1]!))
      for (const listener of listeners) listener(issuance)
    }
  }
}
