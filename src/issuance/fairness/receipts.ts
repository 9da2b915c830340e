import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  hash,
  type KeyObject,
  randomFillSync,
  sign,
  verify,
} from 'node:crypto'
import type { Issuance, Receipt } from '../../domain/coupon.ts'

/*
 * Signed receipts (docs/api.md "Receipts"): every 2xx issuance answer carries what the service signed about
 * the request, with an Ed25519 key it publishes at GET /.well-known/coupon-rush-receipt-key. One Ed25519
 * signature per admission was a large part of the server's CPU, so the receipts asked for in one event-loop
 * turn are the leaves of a Merkle tree and one signature covers its root; each receipt carries its path to
 * the root (`proof`) and a random `nonce`, so a leaf tells nothing about its neighbours.
 */

/** The fields that make a leaf: everything but `proof` and `signature`. */
export type ReceiptFields = Omit<Receipt, 'proof' | 'signature'>

/** Receipts in one signed tree at most; more in one turn start another tree. */
export const MAX_RECEIPT_BATCH = 4_096

/** What the signature covers: this ASCII prefix, then the 32 bytes of the root. */
const ROOT_PREFIX = Buffer.from('coupon-rush-receipt-root:', 'ascii')
const NONCE_BYTES = 16
const HASH_BYTES = 32
const PROOF_STEP = /^[LR][A-Za-z0-9_-]{43}$/

/** The canonical JSON of a leaf: keys sorted, no whitespace, absent fields left out. */
export function canonicalReceiptJson(fields: ReceiptFields): string {
  const entries = Object.entries(fields)
    .filter(([, value]) => value !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return JSON.stringify(Object.fromEntries(entries))
}

/** leaf = SHA-256(0x00 ‖ canonical JSON). */
export function receiptLeafHash(fields: ReceiptFields): Buffer {
  return hash('sha256', `\u0000${canonicalReceiptJson(fields)}`, 'buffer')
}

/**
 * parent = SHA-256(0x01 ‖ left ‖ right). `joined` is where the input is laid out; a tree's parents share one
 * (hash() copies what it reads).
 */
function parentHash(left: Buffer, right: Buffer, joined = Buffer.allocUnsafe(1 + 2 * HASH_BYTES)): Buffer {
  joined[0] = 0x01
  left.copy(joined, 1)
  right.copy(joined, 1 + HASH_BYTES)
  return hash('sha256', joined, 'buffer')
}

/**
 * The fields a receipt states about an issuance (its place or position, and the Redis time it was taken),
 * built in sorted key order so that their plain JSON is already the canonical one (`leafOf`).
 */
export function receiptFieldsOf(issuance: Issuance, nonce: string): ReceiptFields {
  return {
    couponId: issuance.couponId,
    nonce,
    ...(issuance.position === undefined ? {} : { position: issuance.position }),
    ...(issuance.prequeuePlace === undefined ? {} : { prequeuePlace: issuance.prequeuePlace }),
    redisTimeMs: Date.parse(issuance.requestedAt),
    status: issuance.status,
    userId: issuance.userId,
  }
}

/** The leaf of fields made by `receiptFieldsOf` (keys in sorted order): no sort needed. */
function leafOf(fields: ReceiptFields): Buffer {
  return hash('sha256', `\u0000${JSON.stringify(fields)}`, 'buffer')
}

/** The root a leaf and its proof lead to, or undefined when a step is malformed. */
function rootOf(leaf: Buffer, proof: readonly unknown[]): Buffer | undefined {
  let node = leaf
  for (const step of proof) {
    if (typeof step !== 'string' || !PROOF_STEP.test(step)) return undefined
    const sibling = Buffer.from(step.slice(1), 'base64url')
    if (sibling.length !== HASH_BYTES) return undefined
    node = step[0] === 'L' ? parentHash(sibling, node) : parentHash(node, sibling)
  }
  return node
}

/** Checks a receipt: its leaf, up its proof to a root the key signed (any changed field or step fails). */
export function verifyReceipt(receipt: Receipt, publicKey: KeyObject): boolean {
  const { signature, proof, ...fields } = receipt
  if (typeof signature !== 'string' || !Array.isArray(proof) || typeof fields.nonce !== 'string') return false
  const root = rootOf(receiptLeafHash(fields), proof)
  if (root === undefined) return false
  return verify(null, Buffer.concat([ROOT_PREFIX, root]), publicKey, Buffer.from(signature, 'base64url'))
}

/**
 * The tree's levels, leaves first, root last. An odd node at the end of a level has no sibling: it is
 * carried up to the next level unchanged.
 */
function treeLevels(leaves: Buffer[]): Buffer[][] {
  const levels = [leaves]
  const joined = Buffer.allocUnsafe(1 + 2 * HASH_BYTES)
  let level = leaves
  while (level.length > 1) {
    const next: Buffer[] = []
    for (let i = 0; i < level.length; i += 2) {
      const left = level[i] as Buffer
      const right = level[i + 1]
      next.push(right === undefined ? left : parentHash(left, right, joined))
    }
    levels.push(next)
    level = next
  }
  return levels
}

/**
 * Each leaf's proof: at each level, the sibling's side (`L`/`R`) and its base64url hash; none when carried.
 * A node is the sibling of one node only, always on the same side (an even index is a left one), so each
 * step's string is built once per node and shared, not once per leaf under it.
 */
function proofsOf(levels: Buffer[][]): string[][] {
  const steps = levels
    .slice(0, -1)
    .map((level) => level.map((node, index) => `${index & 1 ? 'R' : 'L'}${node.toString('base64url')}`))
  return (levels[0] ?? []).map((_, leaf) => {
    const proof: string[] = []
    let index = leaf
    for (const level of steps) {
      const sibling = level[index ^ 1]
      if (sibling !== undefined) proof.push(sibling)
      index >>= 1
    }
    return proof
  })
}

interface Waiting {
  issuance: Issuance
  resolve: (receipt: Receipt) => void
  reject: (error: unknown) => void
}

/** Reads RECEIPT_SIGNING_KEY: a PEM private key, or base64 of its PKCS#8 DER. */
function parsePrivateKey(configured: string): KeyObject {
  const key = configured.includes('-----BEGIN')
    ? createPrivateKey(configured)
    : createPrivateKey({ key: Buffer.from(configured, 'base64'), format: 'der', type: 'pkcs8' })
  if (key.asymmetricKeyType !== 'ed25519')
    throw new Error('RECEIPT_SIGNING_KEY must be an Ed25519 private key')
  return key
}

/** Signs receipts with the configured key, or one made for this run (said so once, in the log). */
export class ReceiptSigner {
  readonly publicKey: KeyObject
  readonly generated: boolean
  private readonly privateKey: KeyObject
  private waiting: Waiting[] = []
  private scheduled = false
  private readonly noncePool = Buffer.alloc(NONCE_BYTES * MAX_RECEIPT_BATCH)
  private noncesUsed = MAX_RECEIPT_BATCH

  constructor(configured: string | undefined) {
    this.generated = configured === undefined
    this.privateKey =
      configured === undefined ? generateKeyPairSync('ed25519').privateKey : parsePrivateKey(configured)
    this.publicKey = createPublicKey(this.privateKey)
  }

  /** The issuance's receipt, signed with every other receipt asked for in this event-loop turn. */
  sign(issuance: Issuance): Promise<Receipt> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ issuance, resolve, reject })
      if (this.waiting.length >= MAX_RECEIPT_BATCH) this.flush()
      else if (!this.scheduled) {
        this.scheduled = true
        // After the turn's I/O callbacks: the replies that came in together are answered together.
        setImmediate(() => {
          this.scheduled = false
          this.flush()
        })
      }
    })
  }

  private flush(): void {
    const batch = this.waiting
    if (batch.length === 0) return
    this.waiting = []
    try {
      const receipts = this.signBatch(batch.map((waiting) => waiting.issuance))
      for (const [i, waiting] of batch.entries()) {
        const receipt = receipts[i]
        if (receipt !== undefined) waiting.resolve(receipt)
      }
    } catch (error) {
      for (const waiting of batch) waiting.reject(error)
    }
  }

  /** One tree over the issuances' receipts, one signature over its root. */
  private signBatch(issuances: Issuance[]): Receipt[] {
    const fields = issuances.map((issuance) => receiptFieldsOf(issuance, this.nonce()))
    const levels = treeLevels(fields.map(leafOf))
    const root = levels[levels.length - 1]?.[0]
    if (root === undefined) throw new Error('a receipt batch has at least one leaf')
    const signature = sign(null, Buffer.concat([ROOT_PREFIX, root]), this.privateKey).toString('base64url')
    const proofs = proofsOf(levels)
    return fields.map((leaf, i) => ({ ...leaf, proof: proofs[i] ?? [], signature }))
  }

  /** A fresh random nonce, from a pool filled once per 4,096 (one getrandom call each costs ~4 µs). */
  private nonce(): string {
    if (this.noncesUsed === MAX_RECEIPT_BATCH) {
      randomFillSync(this.noncePool)
      this.noncesUsed = 0
    }
    const start = NONCE_BYTES * this.noncesUsed++
    return this.noncePool.toString('base64url', start, start + NONCE_BYTES)
  }

  /** The public key as a JWK (OKP, Ed25519), for the well-known route. */
  publicJwk(): { kty: string; crv: string; x: string } {
    const jwk = this.publicKey.export({ format: 'jwk' })
    return { kty: String(jwk.kty), crv: String(jwk.crv), x: String(jwk.x) }
  }
}
