/**
 * Every function stays short enough to read in one sitting: at most 80 lines (SQL text aside) in bench/ and
 * scripts/. In src/ the functions issue 16 found too long are being split; until then no other may join them.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { longFunctions, longFunctionsIn } from '../scripts/long-functions.ts'

const LIMIT = 80

/** `file name` of the src/ functions known to be too long; remove each entry once it is split. */
const SRC_KNOWN_LONG = new Set([
  'src/http/routes/admin.ts adminRoutes',
  'src/http/routes/coupons.ts couponRoutes',
])

function describeAll(found: ReturnType<typeof longFunctions>): string[] {
  return found.map((f) => `${f.file}:${f.line} ${f.name} (${f.lines} lines)`)
}

describe('function length', () => {
  it(`keeps every function in bench/ and scripts/ within ${LIMIT} lines`, () => {
    assert.deepEqual(describeAll(longFunctions(['bench', 'scripts'], LIMIT)), [])
  })

  it(`lets no function in src/ over ${LIMIT} lines beyond the known ones`, () => {
    const unknown = longFunctions(['src'], LIMIT).filter((f) => !SRC_KNOWN_LONG.has(`${f.file} ${f.name}`))
    assert.deepEqual(describeAll(unknown), [])
  })

  it('flags a long function, counts a nested one on its own, and leaves SQL text out', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'function-length-'))
    try {
      const path = join(dir, 'sample.ts')
      const body = (n: number) => Array.from({ length: n }, (_, i) => `  const v${i} = ${i}`).join('\n')
      const sql = Array.from({ length: 100 }, () => '    , column_name').join('\n')
      await writeFile(
        path,
        [
          `export function long() {\n${body(5)}\n  const inner = () => {\n${body(85)}\n  }\n  return inner\n}`,
          `export function query() {\n  return \`SELECT 1\n${sql}\n  FROM t\`\n}`,
          `export function short() {\n${body(78)}\n}`,
        ].join('\n'),
      )
      const found = longFunctionsIn(path, LIMIT).map(({ name, lines }) => ({ name, lines }))
      assert.deepEqual(found, [
        { name: 'long', lines: 95 },
        { name: 'inner', lines: 87 },
      ])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
