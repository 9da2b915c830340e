// The browser side of the proof of work: GET the challenge, solve it in workers, POST with the solution.
import { solveChallengeWorkers } from '/pow-demo/altcha/index.js'

const WORKER = '/pow-demo/altcha/worker.js'

/** Asks for a challenge, solves it and requests the coupon: the HTTP answer, and how long the solve took. */
async function getCoupon(couponId, token) {
  const authorization = `Bearer ${token}`
  const challengeAnswer = await fetch(`/coupons/${couponId}/challenge`, { headers: { authorization } })
  const challenge = await challengeAnswer.json()
  if (!challengeAnswer.ok) return { status: challengeAnswer.status, body: challenge, solveMs: 0 }
  const started = performance.now()
  const concurrency = Math.min(4, navigator.hardwareConcurrency || 1)
  const solution = await solveChallengeWorkers(
    WORKER,
    concurrency,
    challenge.challenge,
    challenge.salt,
    challenge.algorithm,
    challenge.maxnumber,
  )
  const solveMs = performance.now() - started
  if (solution === null) return { status: 0, body: { detail: 'no solution found' }, solveMs }
  const { algorithm, salt, signature } = challenge
  const altcha = btoa(
    JSON.stringify({ algorithm, challenge: challenge.challenge, number: solution.number, salt, signature }),
  )
  const answer = await fetch(`/coupons/${couponId}/issuance`, {
    method: 'POST',
    headers: { authorization, altcha },
  })
  return { status: answer.status, body: await answer.json(), solveMs }
}

window.powDemo = { getCoupon }

document.getElementById('get').addEventListener('click', async () => {
  const result = document.getElementById('result')
  result.textContent = 'solving…'
  const couponId = document.getElementById('coupon').value.trim()
  const token = document.getElementById('token').value.trim()
  const { status, body, solveMs } = await getCoupon(couponId, token)
  result.textContent = `${status} after a ${Math.round(solveMs)} ms solve\n${JSON.stringify(body, null, 2)}`
  result.dataset.status = String(status)
})
