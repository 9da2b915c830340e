/**
 * Where the machine's CPU went during a phase, from /proc: the whole machine, and the processes of the run
 * by role (server, load generator, Redis, Postgres backends of the benchmark database). What is left is
 * other work on the machine (other test suites, the Kafka broker, ...), which the report shows so a noisy
 * run can be recognised as such.
 */
import { readFileSync } from 'node:fs'

const TICKS_PER_SECOND = 100

interface MachineTicks {
  busy: number
  total: number
  /** Interrupt handling (loopback networking lands here), not charged to any process. */
  interrupts: number
  /** Time the hypervisor gave this VM's CPUs to someone else. */
  steal: number
}

function machineTicks(): MachineTicks | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? ''
    // user nice system idle iowait irq softirq steal guest guest_nice (guest time is inside user)
    const fields = line.trim().split(/\s+/).slice(1, 9).map(Number)
    const total = fields.reduce((sum, value) => sum + value, 0)
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0)
    return {
      busy: total - idle,
      total,
      interrupts: (fields[5] ?? 0) + (fields[6] ?? 0),
      steal: fields[7] ?? 0,
    }
  } catch {
    return undefined
  }
}

function processTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return Number(fields[11]) + Number(fields[12])
  } catch {
    return undefined
  }
}

/** CPU seconds (user + system) a process of this machine has used; throws when it cannot be read. */
export function processCpuSeconds(pid: number): number {
  const ticks = processTicks(pid)
  if (ticks === undefined) throw new Error(`no /proc/${pid}/stat: not a process of this machine`)
  return ticks / TICKS_PER_SECOND
}

export type CpuRoles = Record<string, number[]>

/** CPU per role in cores (1.0 = one core busy for the whole phase). */
export interface CpuUse {
  seconds: number
  machineCores: number
  /** Busy cores of the whole machine. */
  busy: number
  roles: Record<string, number>
  /** Interrupt handling (softirq: mostly the loopback TCP traffic of the run) and hypervisor steal. */
  interrupts: number
  steal: number
  /** busy minus every role, interrupts and steal: other processes on the machine. */
  other: number
}

export class CpuMeter {
  private readonly startedAt = performance.now()
  private readonly machine = machineTicks()
  private readonly start = new Map<number, number>()
  private readonly roles: () => CpuRoles

  /** `roles` is asked again at the end, so processes that appeared during the phase are counted too. */
  constructor(roles: () => CpuRoles) {
    this.roles = roles
    for (const pids of Object.values(roles())) {
      for (const pid of pids) {
        const ticks = processTicks(pid)
        if (ticks !== undefined) this.start.set(pid, ticks)
      }
    }
  }

  /** `exited` gives CPU seconds of processes that ended before now (they reported their own usage). */
  stop(exited: Record<string, number> = {}): CpuUse {
    const seconds = (performance.now() - this.startedAt) / 1000
    const machine = machineTicks()
    const cores = (ticks: number) => ticks / TICKS_PER_SECOND / Math.max(seconds, 1e-3)
    const roles: Record<string, number> = {}
    let known = 0
    for (const [role, pids] of Object.entries(this.roles())) {
      let ticks = 0
      for (const pid of new Set(pids)) {
        const now = processTicks(pid)
        if (now !== undefined) ticks += now - (this.start.get(pid) ?? 0)
      }
      roles[role] = round(cores(ticks))
      known += ticks
    }
    for (const [role, cpuSeconds] of Object.entries(exited)) {
      const ticks = cpuSeconds * TICKS_PER_SECOND
      const counted = (roles[role] ?? 0) * TICKS_PER_SECOND * seconds
      if (ticks > counted) {
        roles[role] = round(cores(ticks))
        known += ticks - counted
      }
    }
    const delta = (pick: (ticks: MachineTicks) => number) =>
      machine && this.machine ? pick(machine) - pick(this.machine) : 0
    const busyTicks = delta((ticks) => ticks.busy)
    const totalTicks = delta((ticks) => ticks.total)
    const interruptTicks = delta((ticks) => ticks.interrupts)
    const stealTicks = delta((ticks) => ticks.steal)
    const machineCores = totalTicks > 0 ? Math.round(totalTicks / TICKS_PER_SECOND / seconds) : 0
    return {
      seconds: round(seconds),
      machineCores,
      busy: round(cores(busyTicks)),
      roles,
      interrupts: round(cores(interruptTicks)),
      steal: round(cores(stealTicks)),
      other: round(Math.max(cores(busyTicks - known - interruptTicks - stealTicks), 0)),
    }
  }
}

function round(value: number): number {
  return Math.round(value * 10_000) / 10_000
}
