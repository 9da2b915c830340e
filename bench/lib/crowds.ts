/**
 * The two crowds of bench/bot-farm.ts, against one coupon of a server started with TRUST_PROXY=127.0.0.1
 * (each client's address is its X-Forwarded-For): a bot farm of many accounts behind a few addresses,
 * flooding at full speed and solving the proof of work for real (altcha-lib's solver in worker threads, as
 * many as the farm has cores), and people, each from an address of their own, arriving over a spread and
 * asking once. A person's solve happens in their own browser: modelled as a wait of the measured Chromium
 * median, after which the bench signs the solution itself with the key it gave the server (POW_HMAC_KEY), so
 * 3,000 solves do not cost this machine's CPU.
 */
import { createChallenge } from 'altcha-lib/v1'
import type { Challenge } from 'altcha-lib/v1/types'
import { type Dispatcher, request } from 'undici'
import { signUserToken } from '../../src/auth/tokens.ts'
import { SolverPool } from './solver-pool.ts'

export interface Tally {
  requests: number
  accepted: number
  soldOut: number
  rateLimited: number
  powRefused: number
  other: number
  /** Challenges the farm solved. */
  solved: number
  /** performance.now() of the last accepted request. */
  lastAcceptedAt: number
}

export const emptyTally = (): Tally => ({
  requests: 0,
  accepted: 0,
  soldOut: 0,
  rateLimited: 0,
  powRefused: 0,
  other: 0,
  solved: 0,
  lastAcceptedAt: 0,
})

export interface SaleTarget {
  baseUrl: string
  couponId: number
  jwtSecret: string
  powHmacKey: string
  proofOfWork: boolean
  dispatcher: Dispatcher
}

type Answer = { status: number; body: Record<string, unknown> }

async function call(
  target: SaleTarget,
  method: 'GET' | 'POST',
  path: string,
  headers: Record<string, string>,
): Promise<Answer> {
  const response = await request(`${target.baseUrl}${path}`, {
    method,
    dispatcher: target.dispatcher,
    headers,
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  })
  const text = await response.body.text()
  return { status: response.statusCode, body: text === '' ? {} : (JSON.parse(text) as Answer['body']) }
}

function count(tally: Tally, answer: Answer): void {
  tally.requests++
  if (answer.status === 201 || answer.status === 202) {
    tally.accepted++
    tally.lastAcceptedAt = performance.now()
  } else if (answer.status === 410) tally.soldOut++
  else if (answer.status === 429) tally.rateLimited++
  else if (answer.status === 403) tally.powRefused++
  else if (answer.status !== 409) tally.other++
}

/** The `altcha` header for a challenge solved with `number`. */
function payloadOf(challenge: Challenge, number: number): string {
  const { algorithm, salt, signature } = challenge
  return btoa(JSON.stringify({ algorithm, challenge: challenge.challenge, number, salt, signature }))
}

/** A client: its user and address; asks for a challenge when the coupon has proof of work. */
function client(target: SaleTarget, userId: string, address: string) {
  const headers = {
    authorization: `Bearer ${signUserToken(target.jwtSecret, userId)}`,
    'x-forwarded-for': address,
  }
  return {
    challenge: () => call(target, 'GET', `/coupons/${target.couponId}/challenge`, headers),
    issue: (altcha?: string) =>
      call(target, 'POST', `/coupons/${target.couponId}/issuance`, altcha ? { ...headers, altcha } : headers),
  }
}

export interface PeopleOptions {
  people: number
  spreadMs: number
  /** The wait that stands for a person's solve in the browser (the measured median). */
  solveMs: number
  runId: string
}

/** People: person i arrives at i × spread / people, from an address of their own, and asks once. */
export async function runPeople(target: SaleTarget, options: PeopleOptions, tally: Tally): Promise<void> {
  const started = performance.now()
  await Promise.all(
    Array.from({ length: options.people }, async (_, i) => {
      const arriveAt = started + (i * options.spreadMs) / options.people
      await sleepUntil(arriveAt)
      const person = client(
        target,
        `person-${options.runId}-${i}`,
        `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
      )
      let altcha: string | undefined
      if (target.proofOfWork) {
        const answer = await person.challenge()
        if (answer.status !== 200) return count(tally, answer)
        await sleepUntil(performance.now() + options.solveMs)
        const given = answer.body as unknown as Challenge
        // What the person's browser found, signed here with the server's key instead of solved on this CPU.
        const solved = await createChallenge({ hmacKey: target.powHmacKey, number: 1, salt: given.salt })
        altcha = payloadOf(solved, 1)
      }
      count(tally, await person.issue(altcha))
    }),
  )
}

export interface FarmOptions {
  accounts: number
  addresses: number
  /** Requests in flight at once. */
  concurrency: number
  /** Worker threads solving challenges (the farm's CPUs). */
  cores: number
  runId: string
  /** The farm's addresses are 10.9.<addressBlock>.1 to .<addresses>. */
  addressBlock: number
  /** The farm stops then at the latest. */
  deadline: () => boolean
}

/**
 * The farm: every account asks until it holds a request, round robin, `concurrency` at a time, ignoring
 * Retry-After; it stops at the first sold-out answer or at the deadline.
 */
export async function runFarm(target: SaleTarget, options: FarmOptions, tally: Tally): Promise<void> {
  const pending = Array.from({ length: options.accounts }, (_, i) =>
    client(
      target,
      `bot-${options.runId}-${i}`,
      `10.9.${options.addressBlock}.${(i % options.addresses) + 1}`,
    ),
  )
  const solvers = target.proofOfWork ? new SolverPool(options.cores) : undefined
  let soldOut = false
  const stopSolving = setInterval(() => {
    if (soldOut || options.deadline()) solvers?.dropQueued()
  }, 100)
  try {
    await Promise.all(
      Array.from({ length: options.concurrency }, async () => {
        while (!soldOut && !options.deadline() && pending.length > 0) {
          const bot = pending.shift()!
          let altcha: string | undefined
          if (solvers !== undefined) {
            const answer = await bot.challenge()
            if (answer.status !== 200) {
              count(tally, answer)
              if (answer.status === 422) soldOut = true
              pending.push(bot)
              continue
            }
            const challenge = answer.body as unknown as Challenge
            const number = await solvers.solve(challenge)
            if (number === null) continue
            altcha = payloadOf(challenge, number)
          }
          const answer = await bot.issue(altcha)
          count(tally, answer)
          if (answer.status === 410) soldOut = true
          else if (answer.status !== 202 && answer.status !== 409) pending.push(bot)
        }
      }),
    )
  } finally {
    clearInterval(stopSolving)
    tally.solved = solvers?.solved ?? 0
    await solvers?.close()
  }
}

async function sleepUntil(atMs: number): Promise<void> {
  const wait = atMs - performance.now()
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
}
