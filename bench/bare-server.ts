/**
 * The ceiling of the benchmark: a bare Fastify process answering the issuance route with a small JSON, with
 * no authentication, no rate limit, no Redis and no schema. Whatever Coupon Rush does per request costs
 * throughput against this on the same machine. With BARE_HS256_SECRET it first checks the request's token
 * with the service's own HS256 verifier (401 when it fails): the least the contract asks before any answer,
 * so the floor of the sold-out path's CPU on this machine.
 */
import Fastify from 'fastify'
import { hs256Verifier } from '../src/auth/hs256.ts'

const app = Fastify({ logger: false })
let position = 0
const secret = process.env.BARE_HS256_SECRET
const verify = secret === undefined ? undefined : hs256Verifier(secret)

app.get('/healthz', async () => ({ status: 'ok' }))
app.post('/coupons/:id/issuance', async (request, reply) => {
  if (verify !== undefined) {
    const header = request.headers.authorization ?? ''
    try {
      verify(header.startsWith('Bearer ') ? header.slice(7) : '')
    } catch {
      return reply.code(401).send({ code: 'UNAUTHENTICATED' })
    }
  }
  return reply.code(202).send({ status: 'ACCEPTED', position: ++position })
})

const port = Number(process.env.PORT ?? 0)
await app.listen({ port, host: '127.0.0.1' })
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    app.close().then(() => process.exit(0))
  })
}
