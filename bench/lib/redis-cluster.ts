/**
 * A Redis Cluster of a test's or a script's own (3 masters + 3 replicas by default), started by
 * scripts/redis-cluster.sh on free loopback ports with a temporary data folder, so a test may kill masters
 * without touching anything else. The script holds the one way to start and create a cluster; this module picks the ports, reads the
 * topology and kills nodes.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'

const run = promisify(execFile)
const SCRIPT = join(import.meta.dirname, '..', '..', 'scripts', 'redis-cluster.sh')
const HOST = '127.0.0.1'

export interface OwnClusterOptions {
  masters?: number
  replicasPerMaster?: number
  /** cluster-node-timeout: a dead master is replaced after about twice this. */
  nodeTimeoutMs?: number
}

export interface ClusterNode {
  host: string
  port: number
}

export interface OwnCluster {
  /** Every node, masters and replicas: the value of `REDIS_CLUSTER_NODES` as a list. */
  readonly nodes: ClusterNode[]
  /** `REDIS_CLUSTER_NODES` as printed by the script, for a child process's environment. */
  readonly nodesEnv: string
  readonly dataDir: string
  slotOfKey(key: string): Promise<number>
  /** Port of the master serving the slot, as a live node sees the cluster now. */
  masterOfSlot(slot: number): Promise<number>
  masterOfKey(key: string): Promise<number>
  /** Ports of the replicas of a master. */
  replicasOf(masterPort: number): Promise<number[]>
  /**
   * SIGKILLs a master and waits until one of its replicas has taken over its slots and every surviving
   * node sees the cluster ok again; returns the new master's port.
   */
  killMasterAndAwaitFailover(masterPort: number, options?: { onKilled?: () => void }): Promise<number>
  /**
   * SIGSTOPs a node (SIGCONT resumes it): a replica paused this way falls behind its master, as a replica
   * on a slow link would, without the cluster noticing if it is short (under the node timeout).
   */
  pauseNode(port: number): void
  resumeNode(port: number): void
  /** Starts again every node that is down (a killed master rejoins as a replica) and waits until ok. */
  restartDownNodes(): Promise<void>
  /** Stops every node and removes the data folder. */
  destroy(): Promise<void>
}

/** Starts the cluster's nodes through the script; returns its environment and REDIS_CLUSTER_NODES. */
async function launch(
  options: OwnClusterOptions,
  dataDir: string,
): Promise<{ env: NodeJS.ProcessEnv; nodesEnv: string }> {
  const masters = options.masters ?? 3
  const replicas = options.replicasPerMaster ?? 1
  const count = masters * (1 + replicas)
  let lastError: unknown
  // Another process may take a port between the check and the start: try a few bases.
  for (let attempt = 0; attempt < 5; attempt++) {
    const basePort = await freePortRun(count)
    const env = {
      ...process.env,
      REDIS_CLUSTER_PORT: String(basePort),
      REDIS_CLUSTER_MASTERS: String(masters),
      REDIS_CLUSTER_REPLICAS: String(replicas),
      REDIS_CLUSTER_NODE_TIMEOUT: String(options.nodeTimeoutMs ?? 1_000),
      REDIS_CLUSTER_DIR: join(dataDir, String(basePort)),
    }
    try {
      return { env, nodesEnv: parseNodes((await run('bash', [SCRIPT, 'start'], { env })).stdout) }
    } catch (error) {
      lastError = error
      await run('bash', [SCRIPT, 'reset'], { env }).catch(() => undefined)
    }
  }
  await rm(dataDir, { recursive: true, force: true })
  throw new Error(`the test cluster did not start: ${String(lastError)}`)
}

/** The nodes' process ids, by port: the nodes are daemons, not children of this process. */
class NodeProcesses {
  readonly pids = new Map<number, number>()
  private readonly nodes: ClusterNode[]

  constructor(nodes: ClusterNode[]) {
    this.nodes = nodes
  }

  async refresh(): Promise<void> {
    for (const { port } of this.nodes) {
      const pid = await onNode(port, async (redis) =>
        Number(infoField(await redis.info('server'), 'process_id')),
      )
      if (pid !== undefined) this.pids.set(port, pid)
    }
  }

  signal(port: number, signal: NodeJS.Signals): void {
    const pid = this.pids.get(port)
    if (pid === undefined) throw new Error(`no process known for port ${port}`)
    process.kill(pid, signal)
  }

  readonly killAll = (): void => {
    for (const pid of this.pids.values()) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // Already gone.
      }
    }
  }
}

/** The topology as the first node that answers sees it. */
function topology(nodes: ClusterNode[]) {
  const anyNode = async <T>(fn: (redis: Redis) => Promise<T>): Promise<T> => {
    for (const { port } of nodes) {
      const result = await onNode(port, fn)
      if (result !== undefined) return result
    }
    throw new Error('no node of the test cluster answers')
  }
  const slotOfKey = (key: string) => anyNode(async (redis) => Number(await redis.cluster('KEYSLOT', key)))
  const masterOfSlot = async (slot: number) => {
    const view = await anyNode((redis) => clusterNodes(redis))
    const owner = view.find((n) => n.master && !n.failed && n.slots.some(([a, b]) => a <= slot && slot <= b))
    if (owner === undefined) throw new Error(`slot ${slot} is not served`)
    return owner.port
  }
  const replicasOf = async (masterPort: number) => {
    const view = await anyNode((redis) => clusterNodes(redis))
    const master = view.find((n) => n.port === masterPort && n.master)
    if (master === undefined) return []
    return view
      .filter((n) => !n.master && !n.failed && n.masterId === master.id)
      .map((n) => n.port)
      .sort((a, b) => a - b)
  }
  return { slotOfKey, masterOfSlot, replicasOf }
}

/** SIGKILLs a master, then waits until one of `candidates` serves its slots and every survivor sees ok. */
async function killMasterAndAwaitFailover(
  nodes: ClusterNode[],
  processes: NodeProcesses,
  masterPort: number,
  candidates: number[],
  onKilled?: () => void,
): Promise<number> {
  if (candidates.length === 0) throw new Error(`${masterPort} is not a master with replicas`)
  processes.signal(masterPort, 'SIGKILL')
  onKilled?.()
  processes.pids.delete(masterPort)
  await until(`port ${masterPort} to close`, async () => (await onNode(masterPort, ping)) === undefined)
  const survivors = nodes.filter((node) => node.port !== masterPort && processes.pids.has(node.port))
  let promoted = 0
  await until(`a replica of ${masterPort} to take over`, async () => {
    for (const port of candidates) {
      const role = await onNode(port, async (redis) => infoField(await redis.info('replication'), 'role'))
      if (role === 'master') promoted = port
    }
    if (promoted === 0) return false
    for (const { port } of survivors) {
      const seen = await onNode(port, async (redis) => ({
        state: infoField(await redis.cluster('INFO'), 'cluster_state'),
        view: await clusterNodes(redis),
      }))
      if (seen?.state !== 'ok') return false
      if (seen.view.some((n) => n.port === masterPort && n.slots.length > 0)) return false
    }
    return true
  })
  return promoted
}

export async function startOwnCluster(options: OwnClusterOptions = {}): Promise<OwnCluster> {
  const dataDir = await mkdtemp(join(tmpdir(), 'coupon-rush-cluster-'))
  const { env, nodesEnv } = await launch(options, dataDir)
  const nodes = nodesEnv.split(',').map((item) => {
    const [host = HOST, port = '0'] = item.split(':')
    return { host, port: Number(port) }
  })
  // Kill the nodes if the process ends without destroy().
  const processes = new NodeProcesses(nodes)
  process.once('exit', processes.killAll)
  await processes.refresh()
  const { slotOfKey, masterOfSlot, replicasOf } = topology(nodes)
  return {
    nodes,
    nodesEnv,
    dataDir,
    slotOfKey,
    masterOfSlot,
    async masterOfKey(key) {
      return masterOfSlot(await slotOfKey(key))
    },
    replicasOf,
    async killMasterAndAwaitFailover(masterPort, { onKilled } = {}) {
      const candidates = await replicasOf(masterPort)
      return killMasterAndAwaitFailover(nodes, processes, masterPort, candidates, onKilled)
    },
    pauseNode: (port) => processes.signal(port, 'SIGSTOP'),
    resumeNode: (port) => processes.signal(port, 'SIGCONT'),
    async restartDownNodes() {
      await run('bash', [SCRIPT, 'start'], { env })
      await processes.refresh()
      // The script waits for replication; gossip may still flag the restarted node as failed for a moment.
      await until('every node to see every other as healthy', async () => {
        for (const { port } of nodes) {
          const view = await onNode(port, (redis) => clusterNodes(redis))
          if (view === undefined || view.some((n) => n.failed)) return false
        }
        return true
      })
    },
    async destroy() {
      await run('bash', [SCRIPT, 'stop'], { env }).catch(() => undefined)
      processes.killAll()
      process.removeListener('exit', processes.killAll)
      await rm(dataDir, { recursive: true, force: true })
    },
  }
}

function parseNodes(stdout: string): string {
  const line = stdout.split('\n').find((l) => l.startsWith('REDIS_CLUSTER_NODES='))
  if (line === undefined) throw new Error(`redis-cluster.sh printed no REDIS_CLUSTER_NODES:\n${stdout}`)
  return line.slice('REDIS_CLUSTER_NODES='.length).trim()
}

interface NodeView {
  port: number
  id: string
  master: boolean
  failed: boolean
  /** For a replica: the id of its master. */
  masterId: string
  slots: [number, number][]
}

/**
 * CLUSTER NODES as one node sees it. (CLUSTER SLOTS would do for masters, but Redis 7 leaves out replicas
 * that have replicated nothing yet, as on an empty cluster.)
 */
async function clusterNodes(redis: Redis): Promise<NodeView[]> {
  const raw = String(await redis.cluster('NODES'))
  return raw
    .trim()
    .split('\n')
    .map((line) => {
      const [id = '', address = '', flags = '', masterId = '', , , , , ...slots] = line.trim().split(' ')
      const flagList = flags.split(',')
      return {
        id,
        port: Number(address.split('@')[0]?.split(':').at(-1)),
        master: flagList.includes('master'),
        failed: flagList.includes('fail') || flagList.includes('fail?'),
        masterId,
        // Migrating/importing markers look like [slot->-id]; a stable cluster has none.
        slots: slots
          .filter((range) => !range.startsWith('['))
          .map((range): [number, number] => {
            const [start, end = start] = range.split('-')
            return [Number(start), Number(end)]
          }),
      }
    })
}

function infoField(info: string, field: string): string | undefined {
  const line = info.split('\r\n').find((l) => l.startsWith(`${field}:`))
  return line?.slice(field.length + 1)
}

const ping = async (redis: Redis) => redis.ping()

/** Runs fn on a short-lived connection to one node; undefined when the node does not answer. */
async function onNode<T>(port: number, fn: (redis: Redis) => Promise<T>): Promise<T | undefined> {
  const redis = new Redis({
    host: HOST,
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1_000,
    commandTimeout: 1_000,
  })
  redis.on('error', () => undefined)
  try {
    await redis.connect()
    return await fn(redis)
  } catch {
    return undefined
  } finally {
    redis.disconnect()
  }
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/**
 * A base port such that base..base+count-1 and their cluster bus ports (+10000) are free. Chosen below the
 * kernel's ephemeral range (32768+) so the bus ports do not collide with outgoing connections.
 */
async function freePortRun(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 2_700)
    const ports = Array.from({ length: count }, (_, i) => base + i)
    const free = await Promise.all([...ports, ...ports.map((p) => p + 10_000)].map(isFree))
    if (free.every(Boolean)) return base
  }
  throw new Error('no free run of ports for a test cluster')
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, HOST, () => server.close(() => resolve(true)))
  })
}
