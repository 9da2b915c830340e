import type { PrequeueOrder } from '../../domain/coupon.ts'
import { ReplicaAckError } from '../../domain/errors.ts'
import { execOnSlot, type RedisClient } from '../../redis/client.ts'
import { type CouponKeys, channels, couponKeys } from '../../redis/keys.ts'
import {
  defineItemScript,
  defineScript,
  type ItemScript,
  type ReplicaAck,
  replyCode,
  replyInteger,
  replyList,
  replyString,
  replyStrings,
} from '../../redis/scripts.ts'
import type { IssuanceContext } from './context.ts'
import { decodeRecord, encodeRecord, type IssuanceRecord } from './record.ts'

/*
 * The owner of a coupon's Redis state: the state hash (stock, seq, counters; "loaded" means it has a stock)
 * and the users hash (userId -> issuance record, codec in record.ts). `CouponStates` is bound once to the
 * Redis client and key prefix (as BullMQ's QueueKeys or @fastify/rate-limit's RedisStore); `of(couponId)`
 * gives the coupon's handle, its keys resolved once. Nothing else names a coupon's keys: the modes and
 * workers read them from the handle, whose methods run the Lua scripts through one typed wrapper each.
 */

/** What an admission script answered. `notLoaded`: Redis lost the coupon's state (rebuild, then retry). */
export type AdmissionReply =
  | { kind: 'admitted'; position: number; requestedAtMs: number }
  | { kind: 'alreadyRequested'; record: IssuanceRecord }
  | { kind: 'prequeued'; place: number; requestedAtMs: number }
  | WindowRefusal
  | { kind: 'soldOut' }
  | { kind: 'notLoaded' }

/** The issue window refused the request on Redis's clock (or an admin paused the coupon). */
export type WindowRefusal = { kind: 'notStarted' } | { kind: 'ended' } | { kind: 'paused' }

/** The schedule a coupon's state hash holds (what the admission scripts check against Redis TIME). */
export interface CouponSchedule {
  opensAtMs: number
  closesAtMs: number
  paused: boolean
  /** Undefined: no pre-queue. */
  prequeueOpensAtMs?: number
  prequeueOrder?: PrequeueOrder
}

function admissionDecoder(name: string): (reply: unknown) => AdmissionReply {
  return (reply) => {
    const code = replyCode(name, reply)
    if (typeof code === 'number') {
      return { kind: 'admitted', position: code, requestedAtMs: replyInteger(name, reply, 1) }
    }
    switch (code) {
      case 'alreadyRequested':
        return { kind: code, record: decodeRecord(replyString(name, reply, 1)) }
      case 'prequeued':
        return {
          kind: code,
          place: replyInteger(name, reply, 1),
          requestedAtMs: replyInteger(name, reply, 2),
        }
      case 'notShuffled':
        throw new Error(`script ${name} cannot answer ${code}`)
      default:
        return { kind: code }
    }
  }
}

/** The sync mode's window check: Redis's time when open, else why not. */
export type WindowCheck = { kind: 'open'; nowMs: number } | WindowRefusal | { kind: 'notLoaded' }

function windowDecoder(reply: unknown): WindowCheck {
  const code = replyCode('checkWindow', reply)
  if (typeof code === 'number') return { kind: 'open', nowMs: code }
  if (code === 'notStarted' || code === 'ended' || code === 'paused' || code === 'notLoaded')
    return { kind: code }
  throw new Error(`script checkWindow cannot answer ${code}`)
}

/** One batch moved out of the pre-queue, or why none was. */
export type MoveReply =
  | { kind: 'moved'; moved: number; left: number; soldOutPairs: string[] }
  | { kind: 'notLoaded' }
  | { kind: 'notStarted' }
  | { kind: 'notShuffled' }

function moveDecoder(reply: unknown): MoveReply {
  const code = replyCode('movePrequeue', reply)
  if (typeof code === 'number') {
    const list = replyList('movePrequeue', reply)
    return { kind: 'moved', moved: code, left: Number(list[1]), soldOutPairs: list.slice(2).map(String) }
  }
  if (code === 'notLoaded' || code === 'notStarted' || code === 'notShuffled') return { kind: code }
  throw new Error(`script movePrequeue cannot answer ${code}`)
}

function scheduleArgs(schedule: CouponSchedule): string[] {
  const prequeue = schedule.prequeueOpensAtMs
  return [
    String(schedule.opensAtMs),
    String(schedule.closesAtMs),
    schedule.paused ? '1' : '0',
    prequeue === undefined ? '' : String(prequeue),
    prequeue === undefined ? '' : (schedule.prequeueOrder ?? 'arrival'),
  ]
}

/** A reply `{ count }` or `{ -1 }`: the count, or undefined when the coupon has no state in Redis. */
function countUnlessNotLoaded(name: string): (reply: unknown) => number | undefined {
  return (reply) => {
    const code = replyCode(name, reply)
    if (typeof code === 'number') return code
    if (code === 'notLoaded') return undefined
    throw new Error(`script ${name} cannot answer ${code}`)
  }
}

export const couponScripts = {
  admitStream: defineItemScript('admitStream', admissionDecoder('admitStream')),
  admitQueue: defineItemScript('admitQueue', admissionDecoder('admitQueue')),
  markDecided: defineScript('markDecided', (reply) => replyInteger('markDecided', reply, 0)),
  settleIssued: defineScript('settleIssued', (reply) => ({
    changed: replyInteger('settleIssued', reply, 0),
    acknowledged: replyInteger('settleIssued', reply, 1),
    trimmed: replyInteger('settleIssued', reply, 2),
  })),
  resolveSoldOut: defineScript('resolveSoldOut', (reply) => replyStrings('resolveSoldOut', reply)),
  lowerQueueStock: defineScript('lowerQueueStock', countUnlessNotLoaded('lowerQueueStock')),
  addSoldOut: defineScript('addSoldOut', countUnlessNotLoaded('addSoldOut')),
  countSyncRequest: defineScript('countSyncRequest', countUnlessNotLoaded('countSyncRequest')),
  mergeRecords: defineScript('mergeRecords', (reply) => replyInteger('mergeRecords', reply, 0)),
  restoreState: defineScript('restoreState', (reply) => replyInteger('restoreState', reply, 0) === 1),
  addStock: defineScript('addStock', countUnlessNotLoaded('addStock')),
  retireUnrequested: defineScript('retireUnrequested', (reply) => {
    const code = replyInteger('retireUnrequested', reply, 0)
    return code === 1 ? 'closed' : code === 0 ? 'requested' : 'notLoaded'
  }),
  setSchedule: defineScript('setSchedule', (reply) => replyInteger('setSchedule', reply, 0) === 1),
  checkWindow: defineScript('checkWindow', windowDecoder),
  movePrequeue: defineScript('movePrequeue', moveDecoder),
  rankPrequeue: defineScript('rankPrequeue', (reply) => replyInteger('rankPrequeue', reply, 0)),
}

/** The state hash's counters as numbers (missing fields read as 0). */
export interface CouponCounters {
  loaded: boolean
  stock: number
  /** The last position given. */
  seq: number
  /** Requests refused as sold out at admission (and from memory). */
  soldOut: number
  /** Waiting users the queue scheduler resolved sold out. */
  resolvedSoldOut: number
  /** ISSUED records written by markDecided. */
  issued: number
  /** Requests the sync mode decided. */
  requested: number
}

/** What the sync mode counts once Postgres decided a request (issued: with its absolute stock and position). */
export type SyncDecision = { outcome: 'issued'; stock: number; position: number } | { outcome: 'soldOut' }

type RedisSide = Pick<IssuanceContext, 'redis' | 'redisPrefix' | 'replicaAck'>
type Pipeline = ReturnType<IssuanceContext['redis']['pipeline']>

const HANDLE_CACHE_LIMIT = 10_000
/** Pre-queue scores from here on are arrivals after the start (window.lua's LATE_BASE). */
export const PREQUEUE_LATE_BASE = 1_000_000_000_000
const MERGE_CHUNK = 500

/** The coupons' Redis state, bound to one client and key prefix. */
export class CouponStates {
  readonly channels: ReturnType<typeof channels>
  private readonly side: RedisSide
  // Built once per coupon: the admission hot path asks for its handle on every request.
  private readonly handles = new Map<number, CouponState>()

  constructor(side: RedisSide) {
    this.side = side
    this.channels = channels(side.redisPrefix)
  }

  of(couponId: number): CouponState {
    let handle = this.handles.get(couponId)
    if (handle === undefined) {
      if (this.handles.size >= HANDLE_CACHE_LIMIT) this.handles.clear()
      handle = new CouponState(
        this.side,
        couponId,
        couponKeys(this.side.redisPrefix, couponId),
        this.channels,
      )
      this.handles.set(couponId, handle)
    }
    return handle
  }
}

/** One coupon's Redis state, its keys resolved once. */
export class CouponState {
  readonly couponId: number
  readonly keys: CouponKeys
  /** The process-wide channels (decisions are published there by core/decisions.ts). */
  readonly channels: ReturnType<typeof channels>
  readonly redis: RedisClient
  private readonly replicaAck: ReplicaAck | undefined
  // The admission scripts' keys and fixed arguments, built once: every admission of the coupon uses them.
  private readonly streamAdmissionKeys: string[]
  private readonly queueAdmissionKeys: string[]
  private readonly admissionArgs: string[]

  constructor(side: RedisSide, couponId: number, keys: CouponKeys, names: ReturnType<typeof channels>) {
    this.redis = side.redis
    this.replicaAck = side.replicaAck
    this.couponId = couponId
    this.keys = keys
    this.channels = names
    this.streamAdmissionKeys = [keys.state, keys.users, keys.stream, keys.prequeue]
    this.queueAdmissionKeys = [keys.state, keys.users, keys.queue, keys.prequeue]
    this.admissionArgs = [names.wakeUp]
  }

  // -------------------------------------------------------------------------------------------------------
  // Admission (the hot path: one script call per coupon and event-loop turn, for all its admissions).

  /**
   * Admits a user to the coupon's stream (stream, kafka): reserves a unit, appends to the outbox, and wakes
   * the drainers when the stream had nothing they were told about.
   */
  admitToStream(userId: string): Promise<AdmissionReply> {
    return this.admit(couponScripts.admitStream, this.streamAdmissionKeys, userId)
  }

  /** Puts a user on the coupon's waiting queue (queue mode) and wakes the scheduler; it decides later. */
  admitToQueue(userId: string): Promise<AdmissionReply> {
    return this.admit(couponScripts.admitQueue, this.queueAdmissionKeys, userId)
  }

  /**
   * An admission script on the state, users, outbox and pre-queue keys; the admissions of one event-loop
   * turn for this coupon share one call (ItemScript). With a replica ack (REDIS_REPLICA_ACK), an
   * admission the replicas did not confirm in time throws ReplicaAckError (503): it happened on the master,
   * and may still end as a row, but a failover could lose it, so it is not told.
   */
  private async admit(script: ItemScript<AdmissionReply>, keys: string[], userId: string) {
    const { redis, replicaAck } = this
    const { reply, replicas } = await script.runItem(redis, keys, this.admissionArgs, userId, replicaAck)
    const wanted = replicaAck?.replicas ?? 0
    if (reply.kind === 'admitted' && replicas !== undefined && replicas < wanted) {
      throw new ReplicaAckError(replicas, wanted)
    }
    return reply
  }

  /**
   * Runs one command on the coupon's keys (`command` adds it to a pipeline) and returns its reply; with
   * REDIS_REPLICA_ACK, only once the replicas hold the state that reply saw, else ReplicaAckError (retried
   * by the caller). Used to read admitted requests before writing them on to Postgres or Kafka: an admission
   * a failover would lose (it was answered 503) must not become a row the promoted replica knows nothing of,
   * or its unit and position would be given a second time. The command, a marker write and `WAIT` go in one
   * pipeline to one node: WAIT covers its connection's last write, the marker, which that node ran after
   * every admission the command saw. A failover in between fails the pipeline, or the command runs on the
   * new master and sees only what it has.
   */
  async readReplicated(command: (pipeline: Pipeline) => Pipeline): Promise<unknown> {
    const { redis, replicaAck: ack } = this
    const pipeline = command(redis.pipeline())
    if (ack !== undefined) {
      pipeline.set(this.keys.replicaProbe, '1', 'PX', 60_000).call('WAIT', ack.replicas, ack.timeoutMs)
    }
    const results = await execOnSlot(redis, pipeline)
    for (const [error] of results) if (error) throw error
    if (ack !== undefined) {
      const replicas = Number(results[2]?.[1])
      if (replicas < ack.replicas) throw new ReplicaAckError(replicas, ack.replicas)
    }
    return results[0]?.[1]
  }

  /** An admission set the coupon's wake flag and no drainer cleared it since (a wake-up nobody heard). */
  async wakeIsSet(): Promise<boolean> {
    return (await this.redis.hget(this.keys.state, 'wake')) !== null
  }

  /**
   * A drainer is about to read the coupon's stream or queue: the next admission wakes the drainers again.
   * Cleared before the read, so an entry appended after this call always publishes a wake-up of its own.
   */
  async clearWake(): Promise<void> {
    await this.redis.hdel(this.keys.state, 'wake')
  }

  // -------------------------------------------------------------------------------------------------------
  // Reads.

  async isLoaded(): Promise<boolean> {
    return (await this.redis.hexists(this.keys.state, 'stock')) === 1
  }

  async readRecord(userId: string): Promise<IssuanceRecord | undefined> {
    const raw = await this.redis.hget(this.keys.users, userId)
    return raw === null ? undefined : decodeRecord(raw)
  }

  /** The records of these users, in their order (undefined for a user without one). */
  async readRecords(userIds: string[]): Promise<(IssuanceRecord | undefined)[]> {
    const raw = await this.redis.hmget(this.keys.users, ...userIds)
    return raw.map((value) => (value === null ? undefined : decodeRecord(value)))
  }

  async readCounters(): Promise<CouponCounters> {
    const raw = await this.redis.hgetall(this.keys.state)
    const field = (name: string) => Number(raw[name] ?? 0)
    return {
      loaded: raw.stock !== undefined,
      stock: field('stock'),
      seq: field('seq'),
      soldOut: field('soldOut'),
      resolvedSoldOut: field('resolvedSoldOut'),
      issued: field('issued'),
      requested: field('requested'),
    }
  }

  /** The stock Redis still has to give, or undefined if Redis lost the coupon's state. */
  async stockIfLoaded(): Promise<number | undefined> {
    const stock = await this.redis.hget(this.keys.state, 'stock')
    return stock === null ? undefined : Number(stock)
  }

  /**
   * The users holding a request for the coupon (the users hash's fields), read in HSCAN pages so a large
   * hash never blocks Redis; undefined when there are more than `limit` of them.
   */
  async requestHolders(limit: number): Promise<Set<string> | undefined> {
    const holders = new Set<string>()
    let more = true
    await this.scanRaw(1_000, (userId) => {
      holders.add(userId)
      if (holders.size > limit) more = false
      return more
    })
    return more ? holders : undefined
  }

  /** Every user's record, page by page (HSCAN): what the audit compares with Postgres. */
  scanRecords(visit: (userId: string, record: IssuanceRecord) => void): Promise<void> {
    return this.scanRaw(2_000, (userId, raw) => {
      visit(userId, decodeRecord(raw))
      return true
    })
  }

  private async scanRaw(count: number, visit: (userId: string, raw: string) => boolean): Promise<void> {
    let cursor = '0'
    do {
      const [next, flat] = await this.redis.hscan(this.keys.users, cursor, 'COUNT', count)
      for (let i = 0; i < flat.length; i += 2) if (!visit(flat[i]!, flat[i + 1]!)) return
      cursor = next
    } while (cursor !== '0')
  }

  /** How many users hold a record. */
  recordCount(): Promise<number> {
    return this.redis.hlen(this.keys.users)
  }

  // -------------------------------------------------------------------------------------------------------
  // Release (issue 18: an ended, drained sale gives its Redis memory back; see plumbing/sale-release.ts).

  /** Requests still on their way to a decision: stream entries, waiting users, dead-lettered entries. */
  async backlog(): Promise<number> {
    const [stream, queue, dead] = await Promise.all([
      this.redis.xlen(this.keys.stream),
      this.redis.zcard(this.keys.queue),
      this.redis.xlen(this.keys.deadLetters),
    ])
    return stream + queue + dead
  }

  /**
   * Every user's record, a page (HSCAN, about `pageSize` users) at a time; `visit` may stop the scan by
   * answering false. What a release copies to Postgres before the records are deleted.
   */
  async scanRecordPages(
    pageSize: number,
    visit: (page: [userId: string, record: IssuanceRecord][]) => Promise<boolean>,
  ): Promise<void> {
    let cursor = '0'
    do {
      const [next, flat] = await this.redis.hscan(this.keys.users, cursor, 'COUNT', pageSize)
      const page: [string, IssuanceRecord][] = []
      for (let i = 0; i < flat.length; i += 2) page.push([flat[i]!, decodeRecord(flat[i + 1]!)])
      if (!(await visit(page))) return
      cursor = next
    } while (cursor !== '0')
  }

  /**
   * Deletes every key of the coupon (UNLINK: a big users hash is freed off Redis's main thread), the state
   * hash first, so a crash in between leaves a coupon that reads as not loaded, never a half-loaded one. The
   * rebuild lease is left to its holder (the releaser holds it while this runs).
   */
  async deleteAll(): Promise<void> {
    const others = Object.entries(this.keys)
      .filter(([name]) => name !== 'state' && name !== 'rebuildLease')
      .map(([, key]) => key)
    await this.redis.unlink(this.keys.state)
    await this.redis.unlink(...others)
  }

  // -------------------------------------------------------------------------------------------------------
  // Writes (the decisions go through core/decisions.ts, which publishes what these return).

  /** Moves the users' records forward (`[userId, encodedRecord, ...]`) and takes them off the queue. */
  async markDecided(pairs: string[]): Promise<void> {
    await couponScripts.markDecided.run(
      this.redis,
      [this.keys.users, this.keys.queue, this.keys.state],
      pairs,
    )
  }

  /**
   * Stream mode, after a batch committed: moves the users' records forward (`pairs` as markDecided's),
   * acknowledges the batch's entries `ids` in `group`, trims what the group is done with and publishes the
   * decisions (a DecisionMessage), in one call.
   */
  async settleIssued(
    group: string,
    ids: string[],
    pairs: string[],
  ): Promise<{ changed: number; acknowledged: number; trimmed: number }> {
    return couponScripts.settleIssued.run(
      this.redis,
      [this.keys.users, this.keys.queue, this.keys.state, this.keys.stream],
      [group, ids.length, this.channels.decisions, this.couponId, ...ids, ...pairs],
    )
  }

  /**
   * Queue mode: resolves waiting users scored up to `maxScore` (at most `max`) SOLD_OUT; returns their
   * `[userId, encodedRecord, ...]` pairs.
   */
  resolveQueueSoldOut(max: number, maxScore: number): Promise<string[]> {
    return couponScripts.resolveSoldOut.run(
      this.redis,
      [this.keys.queue, this.keys.users, this.keys.state],
      [max, maxScore],
    )
  }

  /** Adds refusals answered outside Redis to the coupon's `soldOut` counter; false if Redis lost the state. */
  async addSoldOut(refusals: number): Promise<boolean> {
    return (await couponScripts.addSoldOut.run(this.redis, [this.keys.state], [refusals])) !== undefined
  }

  /**
   * Queue mode: lowers Redis's stock to what Postgres has left (never raises it, never creates the state);
   * a count read under an older `quantity` than an admin's latest addStock is ignored.
   */
  async lowerQueueStock(remaining: number, quantity?: number): Promise<void> {
    const args = quantity === undefined ? [remaining] : [remaining, quantity]
    await couponScripts.lowerQueueStock.run(this.redis, [this.keys.state], args)
  }

  /**
   * An admin raised the quantity in Postgres (committed) from `previous` to `quantity`: the stock grows by
   * the difference, atomically with admissions; false when Redis has no state (a rebuild reads the new one).
   */
  async addStock(quantity: number, previous: number): Promise<boolean> {
    return (
      (await couponScripts.addStock.run(this.redis, [this.keys.state], [quantity, previous])) !== undefined
    )
  }

  /** Before a delete: closes the coupon to admissions unless someone requested it already. */
  retireUnrequested(): Promise<'closed' | 'requested' | 'notLoaded'> {
    return couponScripts.retireUnrequested.run(this.redis, [this.keys.state, this.keys.users], [])
  }

  /** After a delete: every key of the coupon expires in `ms`. */
  async expireAll(ms: number): Promise<void> {
    const pipeline = this.redis.pipeline()
    for (const key of Object.values(this.keys)) pipeline.pexpire(key, ms)
    await execOnSlot(this.redis, pipeline)
  }

  /** Sync mode: counts a request Postgres decided. */
  async countSyncRequest(decided: SyncDecision): Promise<void> {
    const args =
      decided.outcome === 'issued' ? ['issued', decided.stock, decided.position] : ['soldOut', 0, 0]
    await couponScripts.countSyncRequest.run(this.redis, [this.keys.state], args)
  }

  /**
   * A rebuild's last step: merges the records (in chunks, so no call blocks Redis long), then writes the
   * state hash, which makes the coupon loaded again: nobody is admitted against a half-built state.
   */
  async restore(
    records: Map<string, IssuanceRecord>,
    state: { stock: number; seq: number; issued: number },
    schedule: CouponSchedule,
  ): Promise<void> {
    const pairs = [...records].flatMap(([user, record]) => [user, encodeRecord(record)])
    for (let i = 0; i < pairs.length; i += MERGE_CHUNK * 2) {
      const chunk = pairs.slice(i, i + MERGE_CHUNK * 2)
      await couponScripts.mergeRecords.run(this.redis, [this.keys.users], chunk)
    }
    await couponScripts.restoreState.run(
      this.redis,
      [this.keys.state],
      [Math.max(state.stock, 0), state.seq, state.issued, ...scheduleArgs(schedule)],
    )
  }

  // -------------------------------------------------------------------------------------------------------
  // The schedule and the pre-queue (issue 19: one clock, Redis's).

  /** Writes a changed schedule (window, pause, pre-queue) into the state; false if Redis holds no state. */
  setSchedule(schedule: CouponSchedule): Promise<boolean> {
    return couponScripts.setSchedule.run(this.redis, [this.keys.state], scheduleArgs(schedule))
  }

  /** Sync: is the window open on Redis's clock (and Redis's time when it is). */
  checkWindow(): Promise<WindowCheck> {
    return couponScripts.checkWindow.runBatched(this.redis, [this.keys.state], [])
  }

  /** Moves up to `max` pre-queued users into the mode's admission (`outbox`: its stream or queue). */
  movePrequeue(mode: 'stream' | 'queue', max: number): Promise<MoveReply> {
    const outbox = mode === 'stream' ? this.keys.stream : this.keys.queue
    return couponScripts.movePrequeue.run(
      this.redis,
      [this.keys.state, this.keys.users, this.keys.prequeue, outbox, this.keys.prequeuePlaces],
      [mode, max, this.channels.wakeUp],
    )
  }

  /** Writes shuffled ranks (`[userId, rank, ...]`); `last` marks the order complete. */
  async rankPrequeue(pairs: (string | number)[], last: boolean): Promise<void> {
    await couponScripts.rankPrequeue.run(
      this.redis,
      [this.keys.state, this.keys.prequeue],
      [last ? '1' : '0', ...pairs],
    )
  }

  /** The users pre-queued before the start (not those scored from LATE_BASE), in arrival order. */
  prequeuedBeforeStart(): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.prequeue, 0, `(${PREQUEUE_LATE_BASE}`)
  }

  /** userId -> pre-queue arrival place of everyone moved from the pre-queue. */
  async prequeuePlaces(): Promise<Map<string, number>> {
    const raw = await this.redis.hgetall(this.keys.prequeuePlaces)
    return new Map(Object.entries(raw).map(([userId, place]) => [userId, Number(place)]))
  }

  /** How many are in the pre-queue now. */
  prequeueLength(): Promise<number> {
    return this.redis.zcard(this.keys.prequeue)
  }

  /** How many pre-queued users are before this one (by score: arrival, or shuffled rank at the start). */
  async prequeueAhead(userId: string): Promise<number | undefined> {
    const rank = await this.redis.zrank(this.keys.prequeue, userId)
    return rank ?? undefined
  }

  /** The schedule fields of the state hash (undefined if Redis holds no state). */
  async readSchedule(): Promise<(CouponSchedule & { prequeueDone: boolean }) | undefined> {
    const [stock, opensAt, closesAt, paused, prequeueOpensAt, order, done] = await this.redis.hmget(
      this.keys.state,
      'stock',
      'opensAt',
      'closesAt',
      'paused',
      'prequeueOpensAt',
      'prequeueOrder',
      'prequeueDone',
    )
    if (stock === null) return undefined
    return {
      opensAtMs: Number(opensAt),
      closesAtMs: Number(closesAt),
      paused: paused === '1',
      ...(prequeueOpensAt ? { prequeueOpensAtMs: Number(prequeueOpensAt) } : {}),
      ...(order === 'arrival' || order === 'shuffle' ? { prequeueOrder: order } : {}),
      prequeueDone: done !== null,
    }
  }
}
