import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { exportJWK, generateKeyPair, type JWK } from 'jose'
import Provider from 'oidc-provider'

/** The audience of this API's tokens, and the resource a client names to get one. */
export const AUDIENCE = 'coupon-rush'
export const API_RESOURCE = 'urn:coupon-rush'
/** Another API of the same shop: its tokens name another audience. */
export const OTHER_RESOURCE = 'urn:other-api'

/** Clients of the provider; for client-credentials tokens `sub` is the client id, so they are the users. */
export const USERS = { rs256: 'shopper-rs', es256: 'shopper-es', shortLived: 'shopper-short-rs' } as const

export type SigningKey = JWK & { kid: string; alg: string }

/** A private signing key for the provider's keystore (its public half is what the JWKS publishes). */
export async function signingKey(alg: 'RS256' | 'ES256', kid: string): Promise<SigningKey> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true })
  return { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' }
}

function configuration(keys: SigningKey[]): Record<string, unknown> {
  return {
    jwks: { keys },
    clients: Object.values(USERS).map((id) => ({
      client_id: id,
      client_secret: `secret-of-${id}`,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_post',
    })),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => API_RESOURCE,
        useGrantedResource: () => true,
        // JWT access tokens for this API: RS256 or ES256 by client, 2 s for the short-lived one. Its exp is
        // the issue second (rounded down) plus the TTL, so a TTL of 1 s left as little as a few ms to use it
        // (CI refused it as expired on its first use); 2 s leaves at least 1 s, and at most 2 s.
        getResourceServerInfo: (_ctx: unknown, resource: string, client: { clientId: string }) => ({
          scope: 'coupons',
          audience: resource === OTHER_RESOURCE ? 'other-api' : AUDIENCE,
          accessTokenFormat: 'jwt',
          accessTokenTTL: client.clientId === USERS.shortLived ? 2 : 600,
          jwt: { sign: { alg: client.clientId === USERS.es256 ? 'ES256' : 'RS256' } },
        }),
      },
    },
    ttl: {
      ClientCredentials: (_ctx: unknown, token: { resourceServer?: { accessTokenTTL?: number } }) =>
        token.resourceServer?.accessTokenTTL ?? 600,
    },
  }
}

/**
 * A real OpenID provider (oidc-provider) on a free port: discovery, its JWKS and client-credentials JWT
 * access tokens signed by its own keystore. `useKeys` rotates its keys in place (same issuer, same port);
 * `jwksFetches` counts the requests for its JWKS.
 */
export interface IdentityProvider {
  issuer: string
  jwksFetches: number
  token(clientId: string, resource?: string): Promise<string>
  useKeys(keys: SigningKey[]): void
  stop(): Promise<void>
}

export async function startIdentityProvider(keys: SigningKey[]): Promise<IdentityProvider> {
  let handler: (request: IncomingMessage, response: ServerResponse) => void = () => {}
  const idp = { jwksFetches: 0 } as IdentityProvider
  const server: Server = createServer((request, response) => {
    if (request.url?.startsWith('/jwks')) idp.jwksFetches++
    handler(request, response)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  idp.issuer = `http://127.0.0.1:${port}`
  idp.useKeys = (next) => {
    handler = new Provider(idp.issuer, configuration(next)).callback()
  }
  idp.useKeys(keys)
  idp.token = async (clientId, resource = API_RESOURCE) => {
    const response = await fetch(`${idp.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: clientId,
        client_secret: `secret-of-${clientId}`,
        resource,
        scope: 'coupons',
      }),
    })
    const body = (await response.json()) as { access_token?: string }
    if (body.access_token === undefined) throw new Error(`no token: ${JSON.stringify(body)}`)
    return body.access_token
  }
  idp.stop = async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  return idp
}
