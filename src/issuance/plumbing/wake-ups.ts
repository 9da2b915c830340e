import { connectRedis, duplicateRedis } from '../../redis/client.ts'
import { channels } from '../../redis/keys.ts'
import type { IssuanceContext } from '../core/context.ts'

export interface WakeUpHandlers {
  /** A stream's or queue's key the admission scripts published (its first entry since the flag was cleared). */
  wake(key: string): void
  /** A coupon was created or changed. */
  couponChanged(): void
  /** The subscriber reconnected: wake-ups published meanwhile were missed. */
  reconnected(): void
}

/**
 * One subscriber connection of a worker (stream drainer, Kafka relay, queue scheduler) to the wake-up and
 * coupon-changed channels: what lets an idle coupon cost nothing instead of a loop or a blocking read. Plain
 * pub/sub, so on Redis Cluster a message published on any node reaches it. Returns the disconnect.
 */
export async function subscribeWakeUps(
  ctx: IssuanceContext,
  connectionName: string,
  handlers: WakeUpHandlers,
): Promise<() => void> {
  const names = channels(ctx.redisPrefix)
  const subscriber = duplicateRedis(ctx.redis, connectionName)
  // A lost subscriber only delays drains to the next sweep; ioredis reconnects and resubscribes by itself,
  // and every reconnection is reported so the workers make up for the wake-ups missed meanwhile.
  subscriber.on('error', () => {})
  let state: 'connecting' | 'subscribed' | 'failed' = 'connecting'
  const subscribe = async () => {
    await subscriber.subscribe(names.couponChanged, names.wakeUp)
    state = 'subscribed'
  }
  subscriber.on('ready', () => {
    if (state === 'subscribed') handlers.reconnected()
    else if (state === 'failed') subscribe().then(handlers.reconnected, () => {})
  })
  subscriber.on('message', (channel: string, message: string) => {
    if (channel === names.wakeUp) handlers.wake(message)
    else if (channel === names.couponChanged) handlers.couponChanged()
  })
  try {
    await connectRedis(subscriber)
    await subscribe()
  } catch (error) {
    state = 'failed'
    ctx.logger.warn({ err: error }, `${connectionName}: no wake-ups (sweeps only) until Redis answers`)
  }
  return () => subscriber.disconnect()
}
