/**
 * A Redis Cluster master SIGKILLed in the middle of a sale, with REDIS_REPLICA_ACK=1: admissions are
 * answered 2xx only once a replica has them (WAIT), and written on to Postgres or Kafka only then. Once a
 * third of the stock was acknowledged, the coupon's replica is paused (SIGSTOP) and cut off from its master
 * (CLIENT KILL TYPE replica) for longer than the WAIT timeout, then its master is SIGKILLed and the lagging replica takes over; the dead process
 * is started again (it rejoins as the new master's replica, so acknowledgements can resume); the users retry
 * every 503 after its Retry-After. Then, counted against Postgres: nothing acknowledged lost, nothing twice,
 * nothing beyond the stock, positions 1..quantity as told, and no 2xx from the pause to the promotion.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { type OwnCluster, startOwnCluster } from '../bench/lib/redis-cluster.ts'
import type { IssueMode } from '../src/domain/coupon.ts'
import { couponKeys } from '../src/redis/keys.ts'
import { runConcurrently, type TestApp } from './support/app.ts'
import { startClusterApp } from './support/cluster-app.ts'
import { eventually } from './support/infra.ts'
import { assertRowsAsTold, undecidedPending } from './support/invariants.ts'

const MAX_TRIES = 90
/** Longer than REDIS_REPLICA_ACK_TIMEOUT_MS (so WAITs time out meanwhile), shorter than the node timeout. */
const PAUSE_MS = 700
const DRAIN_TIMEOUT_MS = 120_000

interface Answer {
  userId: string
  status: number
  retryAfter: string | undefined
  position: number | undefined
  startedAt: number
  endedAt: number
}

interface Failover {
  /** The replica was paused (it falls behind) from here until right after the master's kill. */
  pausedAt: number
  killedAt: number
  /** The replica took over; the killed process is started again from here (it rejoins as a replica). */
  promotedAt: number
  /** Every node sees the restarted one as healthy. */
  replicaBackAt: number
  backlogAtKill: number
}

async function runSale(
  t: TestApp,
  cluster: OwnCluster,
  mode: IssueMode,
  couponId: number,
  users: number,
  killAfter: number,
): Promise<{ answers: Answer[]; failover: Failover }> {
  const keys = couponKeys(t.env.redisPrefix, couponId)
  const answers: Answer[] = []
  let acknowledged = 0
  let finished = false
  const failover = (async (): Promise<Failover> => {
    while (acknowledged < killAfter && !finished) await sleep(5)
    const master = await cluster.masterOfKey(keys.state)
    const [replica] = await cluster.replicasOf(master)
    const backlogAtKill =
      mode === 'queue' ? await t.app.redis.zcard(keys.queue) : await t.app.redis.xlen(keys.stream)
    // The failover that beats replication: the replica stops and the master drops its link (what it sent
    // before stays in the replica's socket buffer; nothing after reaches it), the sale goes on against the
    // master for longer than the WAIT timeout, then the master dies and the lagging replica takes over.
    const pausedAt = Date.now()
    cluster.pauseNode(replica!)
    const onMaster = new Redis({ port: master, lazyConnect: true, maxRetriesPerRequest: 0 })
    await onMaster.connect()
    await onMaster.client('KILL', 'TYPE', 'replica')
    onMaster.disconnect()
    await sleep(PAUSE_MS)
    let killedAt = 0
    await cluster.killMasterAndAwaitFailover(master, {
      onKilled: () => {
        killedAt = Date.now()
        cluster.resumeNode(replica!)
      },
    })
    const promotedAt = Date.now()
    await cluster.restartDownNodes()
    return { pausedAt, killedAt, promotedAt, replicaBackAt: Date.now(), backlogAtKill }
  })()
  await runConcurrently(users, 64, async (i) => {
    const userId = `${mode}-u${i}`
    const token = t.tokenFor(userId)
    for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
      const startedAt = Date.now()
      const reply = await t.http('POST', `/coupons/${couponId}/issuance`, { token })
      const retryAfter = reply.headers['retry-after']
      answers.push({
        userId,
        status: reply.status,
        retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined,
        position: typeof reply.body.position === 'number' ? reply.body.position : undefined,
        startedAt,
        endedAt: Date.now(),
      })
      if (reply.status === 202) acknowledged += 1
      if (reply.status !== 503) return
      await sleep(Number(retryAfter ?? 1) * 1_000)
    }
  })
  finished = true
  return { answers, failover: await failover }
}

describe('a Redis Cluster master SIGKILLed mid-sale, admissions acknowledged by a replica', () => {
  const figures: Record<string, unknown>[] = []
  after(() => {
    for (const f of figures) console.log(`cluster-failover ${JSON.stringify(f)}`)
  })

  for (const mode of ['stream', 'queue', 'kafka'] as const) {
    it(`${mode}: loses nothing acknowledged, issues nothing twice or beyond the stock, answers 503 with Retry-After until a replica can confirm, and goes on`, async () => {
      const cluster = await startOwnCluster()
      let t: TestApp | undefined
      try {
        t = await startClusterApp(`failover${mode}`, cluster, {
          REDIS_REPLICA_ACK: '1',
          REDIS_REPLICA_ACK_TIMEOUT_MS: '500',
        })
        const quantity = 1_500
        const users = 3_000
        const coupon = await t.createCoupon({ quantity, issueMode: mode })
        const keys = couponKeys(t.env.redisPrefix, coupon.id)
        const { answers, failover } = await runSale(t, cluster, mode, coupon.id, users, quantity / 3)

        // Drain: every admitted request decided in Postgres.
        const rowsOf = async () =>
          (
            await t!.env.db.query<{ user_id: string; position: string }>(
              'SELECT user_id, position FROM user_coupons WHERE coupon_id = $1 ORDER BY position',
              [coupon.id],
            )
          ).rows
        await eventually(
          async () => {
            const rows = (await rowsOf()).length
            const seq = Number((await t!.app.redis.hget(keys.state, 'seq').catch(() => null)) ?? -1)
            if (mode !== 'queue') return rows === seq
            const waiting = await t!.app.redis.zcard(keys.queue).catch(() => -1)
            return waiting === 0 && rows === Math.min(seq, quantity)
          },
          `the ${mode} workers drained the sale`,
          DRAIN_TIMEOUT_MS,
        )
        const rows = await rowsOf()
        const rowOf = new Map(rows.map((row) => [row.user_id, row]))
        const acked = answers.filter((a) => a.status === 202)
        const ackedUsers = new Set(acked.map((a) => a.userId))
        const unavailable = answers.filter((a) => a.status === 503)
        // From the pause until the replica took over, no replica could confirm anything.
        const whileUnconfirmable = answers.filter(
          (a) => a.startedAt >= failover.pausedAt && a.endedAt <= failover.promotedAt,
        )
        const duplicated = rows.length - rowOf.size
        const overIssued = Math.max(rows.length - quantity, 0)
        const records = mode === 'queue' ? await t.app.redis.hgetall(keys.users) : {}
        // queue: a PENDING answer within the first `quantity` positions must be a row; others: every 2xx.
        const lost =
          mode === 'queue'
            ? acked.filter((a) => (a.position ?? 0) <= quantity && !rowOf.has(a.userId)).map((a) => a.userId)
            : [...ackedUsers].filter((user) => !rowOf.has(user))
        figures.push({
          mode,
          backlogAtKill: failover.backlogAtKill,
          acknowledged: acked.length,
          lost: lost.length,
          duplicated,
          overIssued,
          unavailable: unavailable.length,
          unavailableWithRow: [...new Set(unavailable.map((a) => a.userId))].filter(
            (user) => rowOf.has(user) && !ackedUsers.has(user),
          ).length,
          acknowledgedWhileUnconfirmable: whileUnconfirmable.filter((a) => a.status === 202).length,
          promotedMs: failover.promotedAt - failover.killedAt,
          replicaBackMs: failover.replicaBackAt - failover.killedAt,
          rows: rows.length,
        })

        assert.deepEqual(lost, [], 'every acknowledged request ended as a row')
        const statuses = [...new Set(answers.map((a) => a.status))]
        assert.deepEqual(
          statuses.filter((s) => ![202, 409, 410, 503].includes(s)),
          [],
          `statuses ${statuses}`,
        )
        assert.ok(unavailable.length > 0, 'the failover was felt: some answers were 503')
        assert.ok(
          unavailable.every((a) => Number(a.retryAfter) >= 1),
          'every 503 carries Retry-After',
        )
        assert.deepEqual(
          whileUnconfirmable.filter((a) => a.status === 202).map((a) => a.userId),
          [],
          'no 2xx while no replica could confirm (the replica paused, then promoted)',
        )
        assert.ok(
          acked.some((a) => a.startedAt > failover.promotedAt),
          'the sale went on after the failover',
        )
        assertRowsAsTold(rows, acked, quantity)
        if (mode === 'queue') {
          assert.deepEqual(undecidedPending(acked, records), [], 'every PENDING answer was decided')
        }
        // A row without a 2xx: the admission reached Redis but was answered 503; allowed (one row at most).
        const answersOf = Map.groupBy(answers, (a) => a.userId)
        for (const row of rows.filter((r) => !ackedUsers.has(r.user_id))) {
          assert.ok(
            (answersOf.get(row.user_id) ?? []).some((a) => a.status === 503),
            `${row.user_id} holds a row without a 2xx, so it had a 503`,
          )
        }
      } finally {
        try {
          await t?.close()
        } finally {
          await cluster.destroy()
        }
      }
    })
  }
})
