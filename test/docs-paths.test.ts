/**
 * The README's "Layout" and "One admission, end to end" sections name files a reader opens: each must exist.
 * A backticked path from the repo root (`src/...`, `test/...`, `bench/...`, `scripts/...`, `deploy/...`) is
 * taken as is; one relative to src/ (`issuance/core/mode.ts`, `http/`) is looked up under src/, and a Lua
 * script or include named by itself (`admitQueue-4.lua`, `includes/window.lua`) under src/redis/scripts/.
 */
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { ROOT } from './support/processes.ts'

const ROOT_FOLDERS = ['src/', 'test/', 'bench/', 'scripts/', 'deploy/', 'docs/']
const LUA_FOLDER = 'src/redis/scripts'

/** The README text from the `## Layout` heading up to the next `## ` heading (its ### sections included). */
function layoutSections(readme: string): string {
  const start = readme.indexOf('\n## Layout\n')
  assert.ok(start >= 0, 'README.md has a "## Layout" section')
  const end = readme.indexOf('\n## ', start + 1)
  return readme.slice(start, end === -1 ? undefined : end)
}

/** Backticked tokens that look like file or folder paths: a slash, or a `.lua` file; no spaces, no routes. */
function namedPaths(markdown: string): string[] {
  const tokens = [...markdown.matchAll(/`([^`\s]+)`/g)].map((match) => match[1]!)
  return [
    ...new Set(
      tokens.filter((t) => /^[\w.-]+(\/[\w.-]+)*\/?$/.test(t) && (t.includes('/') || t.endsWith('.lua'))),
    ),
  ]
}

/** Where a named path is looked for, in order. */
function candidates(path: string): string[] {
  if (ROOT_FOLDERS.some((folder) => path.startsWith(folder))) return [path]
  if (path.endsWith('.lua')) return [join(LUA_FOLDER, path), join('src', path)]
  return [join('src', path)]
}

describe('README layout and admission path', () => {
  const section = layoutSections(readFileSync(join(ROOT, 'README.md'), 'utf8'))

  it('names files and folders', () => {
    const paths = namedPaths(section)
    assert.ok(paths.length >= 40, `only ${paths.length} paths found: ${paths.join(', ')}`)
    assert.ok(paths.includes('src/http/routes/coupons.ts'))
  })

  it('names only files and folders that exist', () => {
    const missing = namedPaths(section).filter((path) =>
      candidates(path).every((candidate) => !existsSync(join(ROOT, candidate))),
    )
    assert.deepEqual(missing, [])
  })

  it('counts the admission path it lists', () => {
    const admission = section.slice(section.indexOf('### One admission, end to end'))
    const count = /(\d+) files \((\d+) TypeScript, (\d+) Lua\)/.exec(admission)
    assert.ok(count, 'the admission section states its file count')
    // The numbered steps and their indented continuation lines; the paragraphs after them compare modes.
    const steps = admission
      .split('\n')
      .filter((line) => /^(\d+\. | {3})/.test(line))
      .join('\n')
    const files = namedPaths(steps).filter((path) => /\.(ts|lua)$/.test(path))
    const typescript = files.filter((path) => path.endsWith('.ts')).length
    const lua = files.length - typescript
    assert.deepEqual(
      [Number(count[1]), Number(count[2]), Number(count[3])],
      [files.length, typescript, lua],
      `listed: ${files.join(', ')}`,
    )
  })
})
