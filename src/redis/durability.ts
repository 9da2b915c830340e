/**
 * What the Redis in use keeps when it dies: read from `INFO persistence`, `INFO replication` and
 * `CONFIG GET appendonly|appendfsync|save`, turned into a verdict and one sentence saying what a Redis crash
 * would lose. Accepted admissions live only in Redis until the writers put them in Postgres, so this decides
 * whether "you won" can be taken back by a crash.
 */
import { Cluster, type Redis } from 'ioredis'
import { type Static, Type } from 'typebox'
import type { RedisClient } from './client.ts'

export const RedisDurabilitySchema = Type.Object({
  verdict: Type.Union([
    Type.Literal('durable'),
    Type.Literal('replicated'),
    Type.Literal('volatile'),
    Type.Literal('unknown'),
  ]),
  appendonly: Type.Union([Type.Boolean(), Type.Null()]),
  appendfsync: Type.Union([
    Type.Literal('always'),
    Type.Literal('everysec'),
    Type.Literal('no'),
    Type.Null(),
  ]),
  rdbSnapshots: Type.Union([Type.Boolean(), Type.Null()]),
  connectedReplicas: Type.Union([Type.Integer(), Type.Null()]),
  /** One sentence: what a Redis crash would lose. */
  detail: Type.String(),
})

export type RedisDurability = Static<typeof RedisDurabilitySchema>
export type DurabilityVerdict = RedisDurability['verdict']
export const DURABILITY_VERDICTS: readonly DurabilityVerdict[] = [
  'durable',
  'replicated',
  'volatile',
  'unknown',
]

type Fsync = RedisDurability['appendfsync']

/** `field:value` lines of an INFO section. */
function infoField(info: string, field: string): string | undefined {
  return new RegExp(`^${field}:(.*)$`, 'm').exec(info)?.[1]?.trim()
}

async function configValue(node: Redis, name: string): Promise<string> {
  const reply: unknown = await node.config('GET', name)
  const value = Array.isArray(reply) ? reply[1] : undefined
  if (typeof value !== 'string') throw new Error(`CONFIG GET ${name} returned nothing`)
  return value
}

function fsyncOf(value: string): Fsync {
  return value === 'always' || value === 'everysec' || value === 'no' ? value : null
}

/** A report that cannot state the loss; `known` keeps whatever could be read. */
function unknown(detail: string, known: Partial<RedisDurability> = {}): RedisDurability {
  return {
    appendonly: null,
    appendfsync: null,
    rdbSnapshots: null,
    connectedReplicas: null,
    ...known,
    verdict: 'unknown',
    detail: `Could not tell what a Redis crash would lose: ${detail}.`,
  }
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/** The durability of one Redis server. Never throws: what cannot be read is `null` and the verdict `unknown`. */
async function readNode(node: Redis): Promise<RedisDurability> {
  let persistence: string
  let replication: string
  try {
    ;[persistence, replication] = await Promise.all([node.info('persistence'), node.info('replication')])
  } catch (error) {
    return unknown(`INFO failed (${reason(error)})`)
  }
  const replicasField = infoField(replication, 'connected_slaves')
  const connectedReplicas = replicasField === undefined ? null : Number(replicasField)
  const aofField = infoField(persistence, 'aof_enabled')
  let config: { appendonly: boolean; appendfsync: Fsync; rdbSnapshots: boolean }
  try {
    const [appendonly, appendfsync, save] = await Promise.all([
      configValue(node, 'appendonly'),
      configValue(node, 'appendfsync'),
      configValue(node, 'save'),
    ])
    config = {
      appendonly: appendonly === 'yes',
      appendfsync: fsyncOf(appendfsync),
      rdbSnapshots: save !== '',
    }
  } catch (error) {
    // Managed Redis services disable CONFIG: INFO still says whether the AOF is on, but not how often it is
    // fsynced, so the loss cannot be stated.
    const aof = aofField === undefined ? 'unknown' : aofField === '1' ? 'on' : 'off'
    return unknown(
      `CONFIG GET is refused here (${reason(error)}), as on managed Redis; INFO says the append-only file is ` +
        `${aof} and ${connectedReplicas ?? 'an unknown number of'} replica(s) are connected`,
      { appendonly: aofField === undefined ? null : aofField === '1', connectedReplicas },
    )
  }
  return { ...config, connectedReplicas, ...judge(config, connectedReplicas ?? 0) }
}

function judge(
  {
    appendonly,
    appendfsync,
    rdbSnapshots,
  }: { appendonly: boolean; appendfsync: Fsync; rdbSnapshots: boolean },
  replicas: number,
): Pick<RedisDurability, 'verdict' | 'detail'> {
  if (appendonly && appendfsync === 'always') {
    return {
      verdict: 'durable',
      detail:
        'A Redis crash loses nothing acknowledged, even a machine crash: every write is fsynced to the append-only file before it is answered (appendfsync always).',
    }
  }
  if (appendonly) {
    const window = appendfsync === 'everysec' ? 'about the last second' : 'what the OS had not flushed yet'
    return {
      verdict: 'durable',
      detail: `A Redis process crash loses nothing acknowledged (the append-only file is written before each answer); a machine crash or power loss loses ${window} of admissions (appendfsync ${appendfsync ?? 'unknown'}).`,
    }
  }
  if (replicas > 0) {
    return {
      verdict: 'replicated',
      detail: `Nothing is kept on disk but ${replicas} replica(s) are connected: a Redis crash loses the admissions not yet replicated (replication is asynchronous) once a replica takes over, and everything not yet in Postgres if none does.`,
    }
  }
  return {
    verdict: 'volatile',
    detail: rdbSnapshots
      ? 'No append-only file and no replica, only RDB snapshots: a Redis crash loses every admission accepted since the last snapshot and not yet written to Postgres.'
      : 'No append-only file, no snapshots, no replica: a Redis crash loses every admission accepted and not yet written to Postgres.',
  }
}

const WEAKEST_FIRST: readonly DurabilityVerdict[] = ['volatile', 'unknown', 'replicated', 'durable']

/**
 * The durability of the Redis behind `redis`: for a cluster, that of its weakest master (any one of them
 * losing its admissions breaks the promise). Never throws.
 */
export async function readRedisDurability(redis: RedisClient): Promise<RedisDurability> {
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis]
  const reports = await Promise.all(nodes.map(readNode))
  reports.sort((a, b) => WEAKEST_FIRST.indexOf(a.verdict) - WEAKEST_FIRST.indexOf(b.verdict))
  return reports[0] ?? unknown('the cluster has no reachable master')
}
