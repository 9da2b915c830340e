import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyPluginAsync } from 'fastify'
import { AppError } from '../../domain/errors.ts'

const DEMO_DIR = fileURLToPath(new URL('../pow-demo/', import.meta.url))
/** altcha-lib's v1 browser modules (the solver and its worker), served as they ship. */
const ALTCHA_DIR = dirname(fileURLToPath(import.meta.resolve('altcha-lib/v1')))
const ALTCHA_FILES = ['index.js', 'helpers.js', 'worker.js']
const JAVASCRIPT = 'text/javascript; charset=utf-8'

/**
 * `GET /pow-demo.html`: a small page showing a shop how to get a coupon that asks for proof of work (a
 * challenge, solved in Web Workers with altcha-lib's solver, sent in the `altcha` header), with its script
 * and altcha-lib's browser modules under `/pow-demo/`. Same origin as the API, so the CSP needs no change.
 */
export const powDemoRoutes: FastifyPluginAsync = async (app) => {
  const page = await readFile(join(DEMO_DIR, 'pow-demo.html'), 'utf8')
  const scripts = new Map<string, string>([
    ['pow-demo.js', await readFile(join(DEMO_DIR, 'pow-demo.js'), 'utf8')],
  ])
  for (const file of ALTCHA_FILES)
    scripts.set(`altcha/${file}`, await readFile(join(ALTCHA_DIR, file), 'utf8'))

  app.get('/pow-demo.html', { schema: { hide: true } }, async (_request, reply) =>
    reply.type('text/html; charset=utf-8').send(page),
  )
  app.get('/pow-demo/*', { schema: { hide: true } }, async (request, reply) => {
    const path = (request.params as { '*': string })['*']
    const script = scripts.get(path)
    if (script === undefined) throw new AppError('NOT_FOUND', `no file ${path} in the demo`)
    return reply.type(JAVASCRIPT).send(script)
  })
}
