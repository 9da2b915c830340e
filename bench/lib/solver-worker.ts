/** A worker thread of bench/lib/solver-pool.ts: solves each challenge it is sent with altcha-lib's solver. */
import { parentPort } from 'node:worker_threads'
import { solveChallenge } from 'altcha-lib/v1'
import type { Challenge } from 'altcha-lib/v1/types'

parentPort?.on('message', async (challenge: Challenge) => {
  const solution = await solveChallenge(
    challenge.challenge,
    challenge.salt,
    challenge.algorithm,
    challenge.maxnumber,
  ).promise
  parentPort?.postMessage(solution?.number ?? null)
})
