/**
 * Every function stays short enough to read in one sitting: at most 80 lines (SQL text aside) in src/, bench/
 * and scripts/.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { longFunctions, longFunctionsIn } from '../scripts/long-functions.ts'

const LIMIT = 80

function describeAll(found: ReturnType<typeof longFunctions>): string[] {
  return found.map((f) => `${f.file}:${f.line} ${f.name} (${f.lines} lines)`)
}

describe('function length', () => {
  it(`keeps every function in src/, bench/ and scripts/ within ${LIMIT} lines`, () => {
    assert.deepEqual(describeAll(longFunctions(['src', 'bench', 'scripts'], LIMIT)), [])
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
