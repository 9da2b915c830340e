/** Reading a Prometheus text exposition (GET /metrics) in tests. */

/** Every metric family the text declares (`# TYPE name type`), with its type. */
export function metricFamilies(text: string): Map<string, string> {
  const families = new Map<string, string>()
  for (const match of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) families.set(match[1]!, match[2]!)
  return families
}

/** The value of the sample `name{labels}` whose labels include all of `labels`, or undefined. */
export function sampleValue(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null || match[1] !== name) continue
    const own = Object.fromEntries(
      [...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((pair) => [pair[1], pair[2]]),
    )
    if (Object.entries(labels).every(([key, value]) => own[key] === value)) return Number(match[3])
  }
  return undefined
}
