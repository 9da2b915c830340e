import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto'
import type { Issuance, Receipt } from '../../domain/coupon.ts'

/*
 * Signed receipts (docs/api.md "Receipts"): every 2xx issuance answer carries what the service signed about
 * the request, with an Ed25519 key it publishes at GET /.well-known/coupon-rush-receipt-key. The signed text
 * is the canonical JSON of the receipt's fields but `signature`: keys sorted, no spaces, absent fields left out.
 */

export type ReceiptFields = Omit<Receipt, 'signature'>

/** The exact text that is signed: JSON with the keys in sorted order. */
export function canonicalReceiptJson(fields: ReceiptFields): string {
  const entries = Object.entries(fields)
    .filter(([, value]) => value !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return JSON.stringify(Object.fromEntries(entries))
}

/** The fields a receipt states about an issuance (its place or position, and the Redis time it was taken). */
export function receiptFieldsOf(issuance: Issuance): ReceiptFields {
  return {
    couponId: issuance.couponId,
    userId: issuance.userId,
    ...(issuance.position === undefined ? {} : { position: issuance.position }),
    ...(issuance.prequeuePlace === undefined ? {} : { prequeuePlace: issuance.prequeuePlace }),
    redisTimeMs: Date.parse(issuance.requestedAt),
    status: issuance.status,
  }
}

/** Checks a receipt's signature against the public key (any changed field fails). */
export function verifyReceipt(receipt: Receipt, publicKey: KeyObject): boolean {
  const { signature, ...fields } = receipt
  if (typeof signature !== 'string') return false
  const text = Buffer.from(canonicalReceiptJson(fields))
  return verify(null, text, publicKey, Buffer.from(signature, 'base64url'))
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

  constructor(configured: string | undefined) {
    this.generated = configured === undefined
    this.privateKey =
      configured === undefined ? generateKeyPairSync('ed25519').privateKey : parsePrivateKey(configured)
    this.publicKey = createPublicKey(this.privateKey)
  }

  sign(issuance: Issuance): Receipt {
    const fields = receiptFieldsOf(issuance)
    const signature = sign(null, Buffer.from(canonicalReceiptJson(fields)), this.privateKey)
    return { ...fields, signature: signature.toString('base64url') }
  }

  /** The public key as a JWK (OKP, Ed25519), for the well-known route. */
  publicJwk(): { kty: string; crv: string; x: string } {
    const jwk = this.publicKey.export({ format: 'jwk' })
    return { kty: String(jwk.kty), crv: String(jwk.crv), x: String(jwk.x) }
  }
}
