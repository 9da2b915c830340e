import { Type } from 'typebox'

/**
 * TypeBox schemas: one source for request validation, handler types and the OpenAPI document, one file per
 * concept. The views that have a domain type beside them are checked against it when the code compiles
 * (`agrees`).
 */

/** Compiles only when the view schema's type and the domain type are the same (both ways assignable). */
export type Same<View, Domain> = [View] extends [Domain] ? ([Domain] extends [View] ? true : false) : false
export function agrees<_ extends true>(): void {}

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    code: Type.String(),
    detail: Type.String(),
  },
  {
    additionalProperties: true,
    $id: 'Problem',
    description: 'RFC 9457 problem details with a stable `code`',
  },
)

/** Error responses documented on every route that can give them. */
export function errors(...statuses: number[]) {
  return Object.fromEntries(statuses.map((status) => [status, Type.Ref('Problem')]))
}

/** Ids in paths and queries: canonical decimal integers (see plugins/validation.ts) within JS's safe range. */
export const Id = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })

export const IdParams = Type.Object({ id: Id }, { additionalProperties: false })

/** The query of the SSE routes: EventSource cannot send headers, so the token may come here (only there). */
export const EventStreamQuery = Type.Object(
  { access_token: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })) },
  { additionalProperties: false },
)
