/**
 * Receipts signed in batches (docs/api.md "Receipts"): every receipt asked for in one event-loop turn is a
 * leaf of a Merkle tree whose root carries the one Ed25519 signature. Each receipt is checked here twice:
 * with the service's own `verifyReceipt`, and with a verifier written from the contract alone (SHA-256 and
 * Ed25519 of node:crypto), as a third party would.
 */
import assert from 'node:assert/strict'
import { createHash, type KeyObject, verify } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import type { Issuance, Receipt } from '../src/domain/coupon.ts'
import { MAX_RECEIPT_BATCH, ReceiptSigner, verifyReceipt } from '../src/issuance/fairness/receipts.ts'
import { receiptKeyFromJwk } from '../src/issuance/fairness/verify.ts'
import { startTestApp, type TestApp } from './support/app.ts'

const requestedAt = '2026-12-06T20:00:00.000Z'
const issuance = (i: number): Issuance => ({
  couponId: 7,
  userId: `user-${i}`,
  status: 'ACCEPTED',
  position: i + 1,
  requestedAt,
})

/** Asks for `count` receipts in one turn (no await between the calls). */
const signAll = (signer: ReceiptSigner, count: number): Promise<Receipt[]> =>
  Promise.all(Array.from({ length: count }, (_, i) => signer.sign(issuance(i))))

/** The contract's verifier, independent of the service's code: leaf, path up, signature of the root. */
function thirdPartyVerify(receipt: Receipt, key: KeyObject): boolean {
  const { proof, signature, ...fields } = receipt
  const sorted = Object.fromEntries(Object.entries(fields).sort(([a], [b]) => (a < b ? -1 : 1)))
  const sha = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest()
  let node = sha(Buffer.from([0x00]), Buffer.from(JSON.stringify(sorted)))
  for (const step of proof) {
    const sibling = Buffer.from(step.slice(1), 'base64url')
    node = step[0] === 'L' ? sha(Buffer.from([0x01]), sibling, node) : sha(Buffer.from([0x01]), node, sibling)
  }
  const signed = Buffer.concat([Buffer.from('coupon-rush-receipt-root:'), node])
  return verify(null, signed, key, Buffer.from(signature, 'base64url'))
}

/** The same base64url hash with one byte of its middle changed. */
function flipped(encoded: string): string {
  const bytes = Buffer.from(encoded, 'base64url')
  bytes[10] = (bytes[10] ?? 0) ^ 0xff
  return bytes.toString('base64url')
}

describe('receipts: one signature per event-loop turn over a Merkle tree', () => {
  const signer = new ReceiptSigner(undefined)

  it('a batch of 1,001 (odd at several levels) shares one signature and verifies leaf by leaf', async () => {
    const receipts = await signAll(signer, 1_001)
    assert.equal(new Set(receipts.map((receipt) => receipt.signature)).size, 1)
    assert.equal(new Set(receipts.map((receipt) => receipt.nonce)).size, 1_001, 'a fresh nonce per leaf')
    for (const [i, receipt] of receipts.entries()) {
      assert.equal(receipt.userId, `user-${i}`)
      assert.equal(receipt.position, i + 1)
      assert.equal(receipt.redisTimeMs, Date.parse(requestedAt))
      assert.ok(receipt.proof.length >= 1 && receipt.proof.length <= 10, `${receipt.proof.length} steps`)
      for (const step of receipt.proof) assert.match(step, /^[LR][A-Za-z0-9_-]{43}$/)
      assert.ok(verifyReceipt(receipt, signer.publicKey), `receipt ${i}`)
      assert.ok(thirdPartyVerify(receipt, signer.publicKey), `receipt ${i}, third party`)
    }
    // The last leaf has no sibling at the bottom level: carried up, so its path is shorter.
    assert.ok((receipts[1_000]?.proof.length ?? 0) < (receipts[0]?.proof.length ?? 0))
  })

  it('a changed field, a changed proof step, swapped siblings or another key fail', async () => {
    const [receipt, neighbour] = await signAll(signer, 8)
    assert.ok(receipt !== undefined && neighbour !== undefined)
    assert.ok(verifyReceipt(receipt, signer.publicKey))
    const [first, ...rest] = receipt.proof
    assert.ok(first !== undefined)
    const altered: Array<[string, Receipt]> = [
      ['another user', { ...receipt, userId: 'someone-else' }],
      ['another position', { ...receipt, position: 99 }],
      ['another time', { ...receipt, redisTimeMs: receipt.redisTimeMs + 1 }],
      ['another nonce', { ...receipt, nonce: neighbour.nonce }],
      ['a changed sibling hash', { ...receipt, proof: [`${first[0]}${flipped(first.slice(1))}`, ...rest] }],
      [
        'the sibling on the other side',
        { ...receipt, proof: [`${first[0] === 'L' ? 'R' : 'L'}${first.slice(1)}`, ...rest] },
      ],
      ['a step left out', { ...receipt, proof: rest }],
      ["the neighbour's proof", { ...receipt, proof: neighbour.proof }],
      ['a malformed step', { ...receipt, proof: [`X${first.slice(1)}`, ...rest] }],
      ['a changed signature', { ...receipt, signature: flipped(receipt.signature) }],
    ]
    for (const [what, receipt] of altered) {
      assert.equal(verifyReceipt(receipt, signer.publicKey), false, what)
    }
    assert.equal(verifyReceipt(receipt, new ReceiptSigner(undefined).publicKey), false, 'another key')
  })

  it('a batch of one has an empty proof: the leaf is the root', async () => {
    const [receipt] = await signAll(signer, 1)
    assert.ok(receipt !== undefined)
    assert.deepEqual(receipt.proof, [])
    assert.ok(verifyReceipt(receipt, signer.publicKey))
    assert.ok(thirdPartyVerify(receipt, signer.publicKey))
  })

  it(`more than ${MAX_RECEIPT_BATCH.toLocaleString('en-US')} in one turn start another tree`, async () => {
    const receipts = await signAll(signer, MAX_RECEIPT_BATCH + 3)
    const signatures = receipts.map((receipt) => receipt.signature)
    assert.equal(new Set(signatures.slice(0, MAX_RECEIPT_BATCH)).size, 1)
    assert.equal(new Set(signatures).size, 2)
    assert.equal(receipts[0]?.proof.length, 12)
    for (const receipt of receipts) assert.ok(verifyReceipt(receipt, signer.publicKey))
  })
})

describe('receipts over HTTP', () => {
  let t: TestApp
  before(async () => {
    t = await startTestApp('receipts')
  })
  after(() => t.close())

  it('concurrent admissions answered in one turn share one signature; each receipt verifies with the published key', async () => {
    const coupon = await t.createCoupon({ quantity: 1_000, issueMode: 'stream' })
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor(`buyer-${i}`) }),
      ),
    )
    const jwk = await t.http('GET', '/.well-known/coupon-rush-receipt-key')
    const key = receiptKeyFromJwk(jwk.body as { kty: string; crv: string; x: string })
    const receipts = answers.map((answer) => {
      assert.equal(answer.status, 202, JSON.stringify(answer.body))
      return answer.body.receipt as Receipt
    })
    for (const receipt of receipts) {
      assert.ok(verifyReceipt(receipt, key))
      assert.ok(thirdPartyVerify(receipt, key))
    }
    const signatures = new Set(receipts.map((receipt) => receipt.signature))
    assert.ok(
      signatures.size < receipts.length,
      `${signatures.size} signatures for ${receipts.length} receipts`,
    )
  })
})
