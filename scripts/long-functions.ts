/**
 * Lists every function, method, accessor, constructor and arrow longer than a limit (80 lines by default),
 * read with the TypeScript compiler API. A function's length is the lines from its first to its last, less
 * the lines inside SQL template literals (a query is read as one piece of text, not as code). A nested
 * function counts within its parent's length as well as on its own.
 *
 * Run: node scripts/long-functions.ts [limit] [folder...]   (default 80 over src bench scripts)
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import ts from 'typescript'

export interface LongFunction {
  /** Path relative to the repository root. */
  file: string
  name: string
  /** 1-based line where the function starts. */
  line: number
  /** Lines it spans, SQL text aside. */
  lines: number
}

const repoRoot = resolve(import.meta.dirname, '..')
const SQL_START = /^\s*(select|insert|update|delete|with|create|alter|drop|lock|truncate|begin|commit)\b/i

function tsFilesUnder(folder: string): string[] {
  return readdirSync(folder, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && /\.(ts|mts)$/.test(entry.name) && !entry.name.endsWith('.d.ts'))
    .map((entry) => join(entry.parentPath, entry.name))
    .filter((path) => !path.split(/[\\/]/).includes('node_modules'))
    .sort()
}

function isSqlTemplate(node: ts.Node): node is ts.TemplateLiteral {
  if (ts.isNoSubstitutionTemplateLiteral(node)) return SQL_START.test(node.text)
  if (ts.isTemplateExpression(node)) return SQL_START.test(node.head.text)
  return false
}

/** Lines strictly inside SQL templates: those that carry only query text, not the line that opens it. */
function sqlLineSet(source: ts.SourceFile): Set<number> {
  const lines = new Set<number>()
  const visit = (node: ts.Node): void => {
    if (isSqlTemplate(node)) {
      const first = source.getLineAndCharacterOfPosition(node.getStart(source)).line
      const last = source.getLineAndCharacterOfPosition(node.getEnd()).line
      for (let line = first + 1; line <= last; line++) lines.add(line)
      return
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return lines
}

function functionName(node: ts.FunctionLikeDeclaration, source: ts.SourceFile): string {
  if (node.name) return node.name.getText(source)
  if (ts.isConstructorDeclaration(node)) return 'constructor'
  const parent = node.parent
  if (
    ts.isVariableDeclaration(parent) ||
    ts.isPropertyAssignment(parent) ||
    ts.isPropertyDeclaration(parent)
  ) {
    return parent.name.getText(source)
  }
  if (ts.isCallExpression(parent)) return `(callback of ${parent.expression.getText(source).slice(0, 40)})`
  return '(anonymous)'
}

function isFunctionWithBody(node: ts.Node): node is ts.FunctionLikeDeclaration {
  return (
    (ts.isFunctionDeclaration(node) ||
      ts.isFunctionExpression(node) ||
      ts.isArrowFunction(node) ||
      ts.isMethodDeclaration(node) ||
      ts.isConstructorDeclaration(node) ||
      ts.isGetAccessorDeclaration(node) ||
      ts.isSetAccessorDeclaration(node)) &&
    node.body !== undefined
  )
}

export function longFunctionsIn(path: string, limit: number): LongFunction[] {
  const source = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true)
  const sqlLines = sqlLineSet(source)
  const found: LongFunction[] = []
  const visit = (node: ts.Node): void => {
    if (isFunctionWithBody(node)) {
      const first = source.getLineAndCharacterOfPosition(node.getStart(source)).line
      const last = source.getLineAndCharacterOfPosition(node.getEnd()).line
      let lines = 0
      for (let line = first; line <= last; line++) if (!sqlLines.has(line)) lines++
      if (lines > limit) {
        const file = relative(repoRoot, path)
        found.push({ file, name: functionName(node, source), line: first + 1, lines })
      }
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return found
}

/** Every function over `limit` lines in the TypeScript files under `folders` (relative to the repository). */
export function longFunctions(folders: readonly string[], limit = 80): LongFunction[] {
  return folders.flatMap((folder) =>
    tsFilesUnder(join(repoRoot, folder)).flatMap((path) => longFunctionsIn(path, limit)),
  )
}

function main(limit: number, folders: string[]): void {
  const found = longFunctions(folders, limit)
  for (const f of found) console.log(`${f.file}:${f.line}  ${f.name}  ${f.lines} lines`)
  console.log(`${found.length} function(s) over ${limit} lines in ${folders.join(', ')}`)
  process.exitCode = found.length === 0 ? 0 : 1
}

if (import.meta.main) {
  const [limit, ...folders] = process.argv.slice(2)
  main(Number(limit ?? 80), folders.length > 0 ? folders : ['src', 'bench', 'scripts'])
}
