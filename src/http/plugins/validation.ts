import type { FastifyRequest, FastifySchemaValidationError, preValidationHookHandler } from 'fastify'
import fp from 'fastify-plugin'

/**
 * Validation without type coercion. Ajv's coercion (Fastify's default) turned `"10"`, `[10]`, `true` and
 * `"Infinity"` into numbers; here a body is taken as the JSON it is. Path and query values are always
 * strings, so before validation the integer ones are converted, but only from their canonical decimal form
 * (`42`: no sign, leading zero, exponent, hex, spaces or brackets, within JS's safe range); anything else stays
 * a string and fails the schema's `integer` type.
 */
export const ajvOptions = {
  customOptions: {
    coerceTypes: false,
    // Unknown body fields are rejected, not silently stripped.
    removeAdditional: false,
    useDefaults: true,
    allErrors: false,
    strictNumbers: true,
    // Errors carry their schema and data, so the message can name the allowed values of a union's tag.
    verbose: true,
  },
} as const

const CANONICAL_INTEGER = /^(?:0|[1-9][0-9]{0,15})$/

function integerProperties(schema: unknown): string[] {
  if (typeof schema !== 'object' || schema === null || !('properties' in schema)) return []
  const properties = schema.properties
  if (typeof properties !== 'object' || properties === null) return []
  return Object.entries(properties)
    .filter(([, property]) => typeof property === 'object' && property?.type === 'integer')
    .map(([name]) => name)
}

function convertIntegers(part: 'params' | 'query', names: string[]): preValidationHookHandler {
  return (request: FastifyRequest, _reply, done) => {
    const values = request[part] as Record<string, unknown> | undefined
    if (values !== undefined && values !== null) {
      for (const name of names) {
        const value = values[name]
        if (typeof value === 'string' && CANONICAL_INTEGER.test(value) && Number.isSafeInteger(Number(value)))
          values[name] = Number(value)
      }
    }
    done()
  }
}

function asArray<T>(hooks: T | T[] | undefined): T[] {
  if (hooks === undefined) return []
  return Array.isArray(hooks) ? hooks : [hooks]
}

/** Adds the strict conversion of integer path and query values to every route that declares them. */
export default fp(
  async (app) => {
    app.addHook('onRoute', (route) => {
      const params = integerProperties(route.schema?.params)
      const query = integerProperties(route.schema?.querystring)
      const converters = [
        ...(params.length > 0 ? [convertIntegers('params', params)] : []),
        ...(query.length > 0 ? [convertIntegers('query', query)] : []),
      ]
      if (converters.length > 0) route.preValidation = [...converters, ...asArray(route.preValidation)]
    })
  },
  { name: 'validation' },
)

/** The parts of an Ajv error that `verbose` adds: the schema holding the failed keyword and the data. */
interface VerboseError extends FastifySchemaValidationError {
  parentSchema?: unknown
  data?: unknown
}

type SchemaObject = Record<string, unknown>

function isObject(value: unknown): value is SchemaObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * The property every branch of a union pins to a constant (`type` of a discount), with the allowed values.
 */
function unionTag(branches: unknown[]): { name: string; values: unknown[] } | undefined {
  const first = branches[0]
  if (!isObject(first) || !isObject(first.properties)) return undefined
  for (const name of Object.keys(first.properties)) {
    const values = branches.map((branch) => {
      if (!isObject(branch) || !isObject(branch.properties)) return undefined
      const property = branch.properties[name]
      return isObject(property) ? property.const : undefined
    })
    if (values.every((value) => value !== undefined)) return { name, values }
  }
  return undefined
}

function describeOne(error: VerboseError, dataVar: string): string {
  const path = `${dataVar}${error.instancePath}`
  const schema = isObject(error.parentSchema) ? error.parentSchema : {}
  switch (error.keyword) {
    case 'additionalProperties':
      return `${path} must not have the property '${String(error.params.additionalProperty)}'`
    case 'type':
      if (error.params.type === 'integer' && typeof error.data === 'string' && dataVar !== 'body')
        return `${path} must be a decimal integer (digits only: no sign, leading zero, exponent or spaces)`
      return `${path} must be ${error.params.type === 'integer' ? 'an integer' : `of type ${String(error.params.type)}`}`
    case 'pattern':
      if (typeof schema.description === 'string') return `${path} must be ${schema.description}`
      return `${path} ${error.message ?? 'is not valid'}`
    default:
      return `${path} ${error.message ?? 'is not valid'}`
  }
}

/**
 * One line saying what is wrong. Ajv stops at the first failure, except that a failed `anyOf` lists what each
 * branch said before it: for a tagged union (a discount), a wrong tag names the allowed ones and a right tag
 * reports that branch's own failure, instead of every branch's.
 */
export function describeValidation(errors: VerboseError[], dataVar: string): string {
  const failed = errors.at(-1)
  if (failed === undefined) return `${dataVar} is not valid`
  if (failed.keyword !== 'anyOf') return describeOne(failed, dataVar)
  const branches = isObject(failed.parentSchema) ? failed.parentSchema.anyOf : undefined
  const tag = Array.isArray(branches) ? unionTag(branches) : undefined
  const path = `${dataVar}${failed.instancePath}`
  if (tag === undefined) return `${path} ${failed.message ?? 'is not valid'}`
  if (!isObject(failed.data)) return `${path} must be an object`
  const index = tag.values.indexOf(failed.data[tag.name])
  if (index < 0) {
    return `${path}/${tag.name} must be one of ${tag.values.map((value) => JSON.stringify(value)).join(', ')}`
  }
  const prefix = `${failed.schemaPath}/${index}/`
  return describeValidation(
    errors.filter((error) => error.schemaPath.startsWith(prefix)),
    dataVar,
  )
}

export function schemaErrorFormatter(errors: FastifySchemaValidationError[], dataVar: string): Error {
  return new Error(describeValidation(errors, dataVar))
}
