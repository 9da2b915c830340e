/**
 * deploy/prometheus/ and deploy/grafana/ against the real tools and the real service: promtool (Debian's
 * `prometheus` package, installed by scripts/prometheus.sh) checks and unit-tests the rules, and every
 * metric the rules and the dashboard query must be one the service exports.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parse } from 'yaml'
import { startTestApp, type TestApp } from './support/app.ts'
import { metricFamilies } from './support/metrics.ts'
import { ROOT } from './support/processes.ts'

const PROMETHEUS_DIR = join(ROOT, 'deploy/prometheus')
const RULE_FILES = ['coupon-rush.rules.yml', 'coupon-rush.alerts.yml'].map((file) =>
  join(PROMETHEUS_DIR, file),
)
const DASHBOARD = join(ROOT, 'deploy/grafana/coupon-rush.dashboard.json')

function promtool(...args: string[]) {
  const result = spawnSync('promtool', args, { cwd: PROMETHEUS_DIR, encoding: 'utf8' })
  if (result.error) throw new Error(`promtool: ${result.error.message} (run scripts/prometheus.sh)`)
  return { status: result.status, output: `${result.stdout}${result.stderr}` }
}

interface RuleFile {
  groups: { name: string; rules: { record?: string; alert?: string; expr: string }[] }[]
}

const rules = () =>
  RULE_FILES.flatMap((file) =>
    (parse(readFileSync(file, 'utf8')) as RuleFile).groups.flatMap((group) => group.rules),
  )

const PROMQL_WORDS = new Set([
  'and',
  'or',
  'unless',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'offset',
  'bool',
  'inf',
  'nan',
])

/** The metric names a PromQL expression reads: label matchers, ranges, groupings and functions removed. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\boffset\s+\w+/g, ' ')
  return [...bare.matchAll(/(?<![\w:$.])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()/g)]
    .map((match) => match[1]!)
    .filter((name) => !PROMQL_WORDS.has(name.toLowerCase()))
}

interface Dashboard {
  panels: { title: string; targets?: { expr: string }[] }[]
  templating: { list: { name: string; definition?: string }[] }
}

function dashboardQueries(): { where: string; expr: string }[] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard
  const panels = dashboard.panels.flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({ where: `panel "${panel.title}"`, expr: target.expr })),
  )
  // label_values(<selector>, <label>): only its selector is a query.
  const variables = dashboard.templating.list.flatMap((variable) => {
    const selector = /^label_values\((.*),\s*\w+\)$/.exec(variable.definition ?? '')?.[1]
    return selector === undefined ? [] : [{ where: `variable $${variable.name}`, expr: selector }]
  })
  return [...panels, ...variables]
}

describe('deploy/prometheus rules with promtool', () => {
  it('are valid rule files', () => {
    const result = promtool('check', 'rules', ...RULE_FILES)
    assert.equal(result.status, 0, result.output)
    assert.match(result.output, /SUCCESS: 9 rules found/)
    assert.match(result.output, /SUCCESS: 9 rules found/)
  })

  it('pass their unit tests (deploy/prometheus/tests)', () => {
    const tests = readdirSync(join(PROMETHEUS_DIR, 'tests')).filter((file) => file.endsWith('.yml'))
    assert.ok(tests.length > 0)
    const result = promtool('test', 'rules', ...tests.map((file) => join('tests', file)))
    assert.equal(result.status, 0, result.output)
    assert.doesNotMatch(result.output, /FAILED/)
  })

  it('come with an example configuration Prometheus accepts', () => {
    const result = promtool('check', 'config', 'prometheus.example.yml')
    assert.equal(result.status, 0, result.output)
  })
})

describe('the metrics the rules and the dashboard query', () => {
  let t: TestApp
  let exported: Map<string, string>

  before(async () => {
    t = await startTestApp('rulenames', {}, { runWorkers: false })
    const response = await fetch(`${t.baseUrl}/metrics`)
    exported = metricFamilies(await response.text())
  })
  after(() => t.close())

  const known = (name: string) => {
    if (exported.has(name)) return true
    const histogram = /^(.*)_(?:bucket|sum|count)$/.exec(name)?.[1]
    return histogram !== undefined && exported.get(histogram) === 'histogram'
  }

  it('are all exported by the service, or recorded by the rules', () => {
    const recorded = new Set(rules().flatMap((rule) => (rule.record === undefined ? [] : [rule.record])))
    const queries = [
      ...rules().map((rule) => ({ where: rule.record ?? rule.alert ?? '?', expr: rule.expr })),
      ...dashboardQueries(),
    ]
    const used = queries.flatMap(({ where, expr }) => metricNames(expr).map((name) => ({ where, name })))
    const unknown = used.filter(({ name }) => !known(name) && !recorded.has(name))
    assert.deepEqual(unknown, [], 'queried but not exported')
    // Not vacuous: the queries name the per-sale series, the histogram and the durability gauge.
    const names = new Set(used.map(({ name }) => name))
    for (const name of [
      'coupon_sale_oldest_unwritten_age_seconds',
      'http_request_duration_seconds_count',
      'http_request_duration_seconds_bucket',
      'coupon_redis_durability',
      'coupon:sale_issued:max',
    ])
      assert.ok(names.has(name), `${name} is queried`)
    assert.ok(names.size >= 20, `${names.size} names`)
  })

  it('are read by the name parser as PromQL means them', () => {
    assert.deepEqual(
      metricNames(
        'max by (job, coupon_id) (a_total{x="y(z)"} offset 2m) / on (job) group_left rate(b_count[1m]) > 0.5',
      ),
      ['a_total', 'b_count'],
    )
  })
})
