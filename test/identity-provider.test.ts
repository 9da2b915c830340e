import assert from 'node:assert/strict'
import { createHmac, createPublicKey, randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { generateKeyPair, SignJWT } from 'jose'
import { runConcurrently, startTestApp, type TestApp } from './support/app.ts'
import {
  AUDIENCE,
  type IdentityProvider,
  OTHER_RESOURCE,
  type SigningKey,
  signingKey,
  startIdentityProvider,
  USERS,
} from './support/identity-provider.ts'
import { eventually } from './support/infra.ts'

const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

/** The claims of a real token, re-signed by someone who does not hold the provider's key. */
function claimsOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>
}

function unsigned(token: string): string {
  return `${base64url({ alg: 'none', typ: 'JWT' })}.${token.split('.')[1]}.`
}

/** HS256 "signed" with the provider's public RSA key as the secret: the classic algorithm-confusion forgery. */
function forgedWithPublicKey(token: string, key: SigningKey): string {
  const publicPem = createPublicKey({ key: { kty: key.kty, n: key.n, e: key.e }, format: 'jwk' })
    .export({ type: 'spki', format: 'pem' })
    .toString()
  const signingInput = `${base64url({ alg: 'HS256', typ: 'JWT', kid: key.kid })}.${token.split('.')[1]}`
  return `${signingInput}.${createHmac('sha256', publicPem).update(signingInput).digest('base64url')}`
}

describe("user tokens from the shop's identity provider", () => {
  let idp: IdentityProvider
  let t: TestApp
  let rs1: SigningKey
  let es1: SigningKey
  const me = (token: string) => t.http('GET', '/me/coupons', { token })

  before(async () => {
    rs1 = await signingKey('RS256', 'rs-1')
    es1 = await signingKey('ES256', 'es-1')
    idp = await startIdentityProvider([rs1, es1])
    t = await startTestApp('idp', {
      JWT_ISSUER: idp.issuer,
      JWT_AUDIENCE: AUDIENCE,
      JWT_KEYS_REFETCH_MIN_MS: '200',
      JWT_KEYS_MAX_AGE_MS: '1000',
    })
  })
  after(async () => {
    await t.close()
    await idp.stop()
  })

  it('accepts RS256 and ES256 tokens on POST /coupons/{id}/issuance and GET /me/coupons, the user from sub', async () => {
    const coupon = await t.createCoupon({ quantity: 5 })
    for (const user of [USERS.rs256, USERS.es256]) {
      const token = await idp.token(user)
      const admission = await t.http('POST', `/coupons/${coupon.id}/issuance`, { token })
      assert.equal(admission.status, 202, JSON.stringify(admission.body))
      assert.equal(admission.body.userId, user)
      const mine = await me(token)
      assert.equal(mine.status, 200)
      assert.ok(Array.isArray(mine.body))
    }
  })

  it('refuses (401) a token of another issuer, for another audience, expired, unsigned, or HS256 with the public key', async () => {
    const other = await startIdentityProvider([rs1, es1]) // same keys: only the issuer differs
    try {
      const otherIssuer = await other.token(USERS.rs256)
      assert.notEqual(claimsOf(otherIssuer).iss, idp.issuer)
      const refused = await me(otherIssuer)
      assert.equal(refused.status, 401)
      assert.match(String(refused.body.detail), /iss claim/)
    } finally {
      await other.stop()
    }
    const otherAudience = await idp.token(USERS.rs256, OTHER_RESOURCE)
    const refusedAudience = await me(otherAudience)
    assert.equal(refusedAudience.status, 401)
    assert.match(String(refusedAudience.body.detail), /aud claim/)

    const shortLived = await idp.token(USERS.shortLived)
    assert.equal((await me(shortLived)).status, 200)
    await sleep(2_100) // past its exp: at most 2 s after it was issued
    const expired = await me(shortLived)
    assert.equal(expired.status, 401, 'expired, even though it was verified and remembered before')
    assert.match(String(expired.body.detail), /expired/)

    const valid = await idp.token(USERS.rs256)
    assert.equal((await me(unsigned(valid))).status, 401)
    assert.equal((await me(forgedWithPublicKey(valid, rs1))).status, 401)
    assert.equal((await me(valid)).status, 200)
  })

  it('follows a key rotation without a restart: new tokens at once, old ones until their key is removed', async () => {
    const old = await idp.token(USERS.rs256)
    assert.equal((await me(old)).status, 200)

    const rs2 = await signingKey('RS256', 'rs-2')
    idp.useKeys([rs2, rs1, es1])
    await sleep(250) // past JWT_KEYS_REFETCH_MIN_MS since the last fetch
    const fresh = await idp.token(USERS.rs256)
    assert.equal(JSON.parse(Buffer.from(fresh.split('.')[0]!, 'base64url').toString()).kid, 'rs-2')
    assert.equal((await me(fresh)).status, 200, 'a token signed with the new key works at once')
    assert.equal((await me(old)).status, 200, 'the old key still verifies while it is published')

    idp.useKeys([rs2, es1])
    await eventually(
      async () => (await me(old)).status === 401,
      'old token refused once its key is gone',
      5_000,
    )
    assert.equal((await me(fresh)).status, 200)
  })

  it('keeps verifying with cached keys when the provider is down, and answers 503 for a key it never saw', async () => {
    const rs3 = await signingKey('RS256', 'rs-3')
    const es2 = await signingKey('ES256', 'es-2')
    idp.useKeys([rs3, es1, es2])
    const newKeyToken = await idp.token(USERS.rs256) // rs-3: never fetched by the service
    const cachedKeyToken = await idp.token(USERS.es256) // es-1: known, this token never seen
    await idp.stop()

    assert.equal((await me(cachedKeyToken)).status, 200)
    const unknown = await me(newKeyToken)
    assert.equal(unknown.status, 503, JSON.stringify(unknown.body))
    assert.ok(unknown.headers['retry-after'] !== undefined)
    assert.equal((await me(newKeyToken)).status, 503, 'still 503 (never 401) while the provider is away')
  })
})

describe('a flood of tokens with made-up key ids', () => {
  let idp: IdentityProvider
  let t: TestApp
  before(async () => {
    idp = await startIdentityProvider([await signingKey('RS256', 'rs-1')])
    t = await startTestApp('idp-flood', {
      JWT_ISSUER: idp.issuer,
      JWT_AUDIENCE: AUDIENCE,
      JWT_KEYS_REFETCH_MIN_MS: '1000',
    })
  })
  after(async () => {
    await t.close()
    await idp.stop()
  })

  it('costs the provider at most one JWKS fetch per JWT_KEYS_REFETCH_MIN_MS, and lets none through', async () => {
    assert.equal((await t.http('GET', '/me/coupons', { token: await idp.token(USERS.rs256) })).status, 200)
    await sleep(1_100)
    const fetchesBefore = idp.jwksFetches
    const { privateKey } = await generateKeyPair('RS256')
    const startedAt = Date.now()
    const statuses = await runConcurrently(1_000, 50, async () => {
      const token = await new SignJWT({ sub: 'mallory' })
        .setProtectedHeader({ alg: 'RS256', kid: randomUUID() })
        .setIssuer(idp.issuer)
        .setAudience(AUDIENCE)
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(privateKey)
      return (await t.http('GET', '/me/coupons', { token })).status
    })
    const seconds = Math.ceil((Date.now() - startedAt) / 1000)
    const fetches = idp.jwksFetches - fetchesBefore
    assert.deepEqual(
      statuses.filter((status) => status !== 401 && status !== 503),
      [],
      'every made-up key id refused',
    )
    assert.ok(fetches >= 1, 'the first unknown kid refetched the keys')
    assert.ok(fetches <= seconds + 1, `${fetches} JWKS fetches in ${seconds} s`)
    console.log(
      `flood: ${fetches} JWKS fetches in ${seconds} s; ${statuses.filter((s) => s === 401).length} × 401`,
    )
  })
})
