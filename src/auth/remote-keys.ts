import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose'
import { unavailable } from '../domain/errors.ts'

export interface RemoteKeysOptions {
  /** Discovery starts here (`/.well-known/openid-configuration`) unless `jwksUrl` is given. */
  issuer: string | undefined
  jwksUrl: string | undefined
  refetchMinMs: number
  maxAgeMs: number
  /** Called when a refresh finds a key gone: what was verified with it must not be trusted any more. */
  onKeyRemoved: () => void
}

const FETCH_TIMEOUT_MS = 5_000

async function fetchJson(url: string): Promise<Record<string, unknown>> {
  const response = await fetch(url, {
    headers: { accept: 'application/json' },
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
  })
  if (!response.ok) throw new Error(`${url} answered ${response.status}`)
  return (await response.json()) as Record<string, unknown>
}

/**
 * The identity provider's signing keys, fetched once and kept. jose's own remote set is not used as is: it
 * fails every token once its cache ages out while the provider is down, and counts its cooldown from the
 * last successful fetch only, so a flood of unknown `kid`s against a down provider fetches every time.
 * Here: an unknown `kid` refetches at most once per `refetchMinMs` (all waiting requests share it); an aged
 * set is refreshed in the background while the old keys keep verifying; a failed fetch keeps the old keys.
 */
export class RemoteKeys {
  readonly #options: RemoteKeysOptions
  #jwksUrl: string | undefined
  #local: JWTVerifyGetKey | undefined
  #kids = new Set<string>()
  #fetchedAt = Number.NEGATIVE_INFINITY
  #triedAt = Number.NEGATIVE_INFINITY
  #lastFetchFailed = false
  #pending: Promise<void> | undefined

  constructor(options: RemoteKeysOptions) {
    this.#options = options
    this.#jwksUrl = options.jwksUrl
  }

  /** For jose's jwtVerify: the key the token names, fetching the set when it has never been or may be new. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    if (this.#local === undefined) {
      if (!this.#mayFetch()) throw unavailable('the identity provider')
      await this.#refresh()
    } else this.keepFresh()
    try {
      return await this.#local!(header, token)
    } catch (error) {
      if (!(error instanceof errors.JWKSNoMatchingKey)) throw error
      if (this.#mayFetch()) {
        await this.#refresh()
        return this.#local!(header, token)
      }
      // Held back: refuse only what the last fetch settles (a key it lacked for a token issued before it).
      if (this.#lastFetchFailed || this.#mayBeNewerThanKeys(token.payload))
        throw unavailable('the identity provider')
      throw error
    }
  }

  /**
   * Starts a background refresh once the set is older than `maxAgeMs` (the old keys keep verifying
   * meanwhile, and keep doing so if the provider is down). Called for every token, remembered ones too, so
   * a key removed at the provider stops being trusted even for tokens verified before.
   */
  keepFresh(): void {
    if (
      this.#local !== undefined &&
      Date.now() - this.#fetchedAt > this.#options.maxAgeMs &&
      this.#mayFetch()
    )
      this.#refresh().catch(() => {})
  }

  /** Whether the token (its unverified `iat`) may be signed with a key published since the last fetch. */
  #mayBeNewerThanKeys(payload: string | Uint8Array): boolean {
    if (typeof payload !== 'string') return true // jwtVerify always passes the compact form's text
    let issuedAt: unknown
    try {
      issuedAt = (JSON.parse(Buffer.from(payload, 'base64url').toString()) as { iat?: unknown }).iat
    } catch {
      return false
    }
    const allowedSkewMs = 60_000
    return typeof issuedAt !== 'number' || issuedAt * 1000 > this.#fetchedAt - allowedSkewMs
  }

  #mayFetch(): boolean {
    return this.#pending !== undefined || Date.now() - this.#triedAt >= this.#options.refetchMinMs
  }

  #refresh(): Promise<void> {
    if (this.#pending !== undefined) return this.#pending
    this.#triedAt = Date.now()
    this.#pending = this.#fetchKeys().finally(() => {
      this.#pending = undefined
    })
    return this.#pending
  }

  async #fetchKeys(): Promise<void> {
    const startedAt = Date.now()
    let jwks: JSONWebKeySet
    try {
      jwks = (await fetchJson(await this.#keysUrl())) as unknown as JSONWebKeySet
      if (!Array.isArray(jwks.keys)) throw new Error('the JWKS has no "keys" array')
    } catch (error) {
      this.#lastFetchFailed = true
      throw unavailable('the identity provider', error)
    }
    const kids = new Set(jwks.keys.map((key) => key.kid ?? ''))
    const removed = [...this.#kids].some((kid) => !kids.has(kid))
    this.#local = createLocalJWKSet(jwks)
    this.#kids = kids
    this.#fetchedAt = startedAt
    this.#lastFetchFailed = false
    if (removed) this.#options.onKeyRemoved()
  }

  /** The JWKS URL: given, or read once from the issuer's OpenID discovery document. */
  async #keysUrl(): Promise<string> {
    if (this.#jwksUrl !== undefined) return this.#jwksUrl
    const issuer = this.#options.issuer!
    const discovery = await fetchJson(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`)
    if (discovery.issuer !== issuer)
      throw new Error(`the discovery document names issuer ${discovery.issuer}`)
    if (typeof discovery.jwks_uri !== 'string') throw new Error('the discovery document has no jwks_uri')
    this.#jwksUrl = discovery.jwks_uri
    return this.#jwksUrl
  }
}
