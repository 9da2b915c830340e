/**
 * docs/api.md is the contract in the repo: checked here against what the server itself says (its OpenAPI
 * document and routes), the error codes in src/domain/errors.ts, and the README's configuration table.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ERROR_CODES } from '../src/domain/errors.ts'
import { startTestApp, type TestApp } from './support/app.ts'
import { ROOT } from './support/processes.ts'

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const

interface OpenApiDocument {
  paths: Record<string, Partial<Record<(typeof METHODS)[number], { responses?: Record<string, unknown> }>>>
}

/** The text under each heading of `level` (up to the next heading of that level or above), by heading. */
function sections(markdown: string, level: number): Map<string, string> {
  const result = new Map<string, string>()
  let current: string | undefined
  for (const line of markdown.split('\n')) {
    const heading = /^(#{1,6}) (.*)$/.exec(line)
    if (heading && heading[1]!.length <= level) {
      current = heading[1]!.length === level ? heading[2]!.trim() : undefined
      if (current !== undefined) result.set(current, '')
    } else if (current !== undefined) result.set(current, `${result.get(current)}${line}\n`)
  }
  return result
}

/** `METHOD /path` of each endpoint heading (#### `GET /coupons/{id}`), with its section text. */
function documentedEndpoints(markdown: string): Map<string, string> {
  const endpoints = new Map<string, string>()
  for (const [heading, body] of sections(markdown, 4)) {
    const match = /^`(GET|POST|PUT|PATCH|DELETE) (\/\S*)`$/.exec(heading)
    if (match) endpoints.set(`${match[1]} ${match[2]}`, body)
  }
  return endpoints
}

/** Rows of the first markdown table in `text`: cells without the outer pipes, header and rule dropped. */
function tableRows(text: string): string[][] {
  const lines = text.split('\n').filter((line) => line.startsWith('|'))
  return lines.slice(2).map((line) =>
    line
      .slice(1, -1)
      .split('|')
      .map((cell) => cell.trim()),
  )
}

/** Every `const` / `enum` value found under a schema (TypeBox unions become anyOf of const). */
function literalValues(schema: unknown): string[] {
  if (schema === null || typeof schema !== 'object') return []
  const node = schema as { const?: unknown; enum?: unknown[]; anyOf?: unknown[]; oneOf?: unknown[] }
  const own = [
    ...(typeof node.const === 'string' ? [node.const] : []),
    ...(node.enum ?? []).filter((value): value is string => typeof value === 'string'),
  ]
  return [...own, ...[...(node.anyOf ?? []), ...(node.oneOf ?? [])].flatMap(literalValues)]
}

describe('docs/api.md, the API reference', () => {
  let t: TestApp
  let doc: string
  let openapi: OpenApiDocument

  before(async () => {
    t = await startTestApp('apidoc', {}, { runWorkers: false })
    doc = await readFile(join(ROOT, 'docs/api.md'), 'utf8')
    const response = await t.http('GET', '/openapi.json')
    assert.equal(response.status, 200)
    openapi = response.body as unknown as OpenApiDocument
  })
  after(() => t.close())

  const operations = () =>
    Object.entries(openapi.paths).flatMap(([path, item]) =>
      METHODS.filter((method) => item[method] !== undefined).map((method) => ({
        key: `${method.toUpperCase()} ${path}`,
        statuses: Object.keys(item[method]?.responses ?? {}),
      })),
    )

  it('has a section for every path and method of the OpenAPI document', () => {
    const documented = documentedEndpoints(doc)
    const missing = operations()
      .map((operation) => operation.key)
      .filter((key) => !documented.has(key))
    assert.ok(operations().length >= 10, 'the OpenAPI document lists the routes')
    assert.deepEqual(missing, [], 'endpoints in /openapi.json without a section in docs/api.md')
  })

  it('documents only routes the server serves (those outside the OpenAPI document too)', () => {
    const served = new Set(operations().map((operation) => operation.key))
    const unknown = [...documentedEndpoints(doc).keys()].filter((key) => {
      if (served.has(key)) return false
      const [method, path] = key.split(' ') as [string, string]
      return !t.app.hasRoute({ method: method as 'GET', url: path.replace(/\{(\w+)\}/g, ':$1') })
    })
    assert.deepEqual(unknown, [], 'sections of docs/api.md for routes the server does not have')
  })

  it('lists, for every endpoint, each status its OpenAPI responses declare', () => {
    const documented = documentedEndpoints(doc)
    const gaps: string[] = []
    for (const { key, statuses } of operations()) {
      const answers = /^Answers: (.*(?:\n(?!\n).*)*)/m.exec(documented.get(key) ?? '')?.[1] ?? ''
      const listed = new Set(answers.match(/\b[1-5]\d\d\b/g) ?? [])
      for (const status of statuses) if (!listed.has(status)) gaps.push(`${key} ${status}`)
    }
    assert.deepEqual(gaps, [], 'statuses missing from the "Answers:" line of docs/api.md')
  })

  it('lists every error code of src/domain/errors.ts with its status, and no other code', () => {
    const errorsSection = sections(doc, 2).get('Errors') ?? ''
    const rows = tableRows(errorsSection).map(([code, status]) => [code?.replaceAll('`', ''), status])
    const documented = Object.fromEntries(rows.map(([code, status]) => [code, Number(status)]))
    const expected = Object.fromEntries(
      Object.entries(ERROR_CODES).map(([code, { status }]) => [code, status]),
    )
    assert.deepEqual(documented, expected)
  })

  it('describes every issuance mode the API accepts, and no other', () => {
    const body = (openapi.paths['/admin/coupons']?.post as { requestBody?: unknown } | undefined)?.requestBody
    const schema = (body as { content: Record<string, { schema: { properties: Record<string, unknown> } }> })
      .content['application/json']?.schema
    const accepted = literalValues(schema?.properties.issueMode).sort()
    assert.ok(accepted.includes('stream'), 'the OpenAPI document lists the modes')
    const documented = [...sections(doc, 3).keys()]
      .filter((heading) => /^`[a-z]+`$/.test(heading))
      .map((heading) => heading.replaceAll('`', ''))
      .sort()
    assert.deepEqual(documented, accepted)
  })

  it("covers every variable of the README's configuration table", async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
    const readmeVariables = (sections(readme, 2).get('Configuration') ?? '').match(/`[A-Z][A-Z0-9_]+`/g) ?? []
    const documented = new Set(
      tableRows(sections(doc, 2).get('Configuration') ?? '').map(([name]) => name?.replaceAll('`', '')),
    )
    const missing = [...new Set(readmeVariables.map((name) => name.replaceAll('`', '')))].filter(
      (name) => !documented.has(name),
    )
    assert.ok(readmeVariables.length > 5, 'the README names its variables')
    assert.deepEqual(missing, [], 'variables in the README but not in docs/api.md')
  })
})
