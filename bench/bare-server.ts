/**
 * The ceiling of the benchmark: a bare Fastify process answering the issuance route with a small JSON, with
 * no authentication, no rate limit, no Redis and no schema. Whatever Coupon Rush does per request costs
 * throughput against this on the same machine.
 */
// The same V8 settings as the service, so the two compare on equal terms.
import '../bin/v8-flags.mjs'
import Fastify from 'fastify'

const app = Fastify({ logger: false })
let position = 0

app.get('/healthz', async () => ({ status: 'ok' }))
app.post('/coupons/:id/issuance', async (_request, reply) =>
  reply.code(202).send({ status: 'ACCEPTED', position: ++position }),
)

const port = Number(process.env.PORT ?? 0)
await app.listen({ port, host: '127.0.0.1' })
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    app.close().then(() => process.exit(0))
  })
}
