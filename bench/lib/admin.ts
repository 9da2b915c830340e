/** The admin API as the demo and the benchmark use it. */
import { type Dispatcher, request } from 'undici'
import type { CouponStats, IssueMode } from '../../src/domain/coupon.ts'
import type { CouponAudit } from '../../src/issuance/service/audit.ts'

export type { CouponAudit, CouponStats, IssueMode }
export const ALL_MODES: readonly IssueMode[] = ['sync', 'queue', 'stream', 'kafka']

/** Thrown when the server does not offer a mode (422 MODE_UNAVAILABLE). */
export class ModeUnavailableError extends Error {}

export class AdminClient {
  private readonly baseUrl: string
  private readonly token: string
  private readonly dispatcher?: Dispatcher

  constructor(baseUrl: string, token: string, dispatcher?: Dispatcher) {
    this.baseUrl = baseUrl
    this.token = token
    this.dispatcher = dispatcher
  }

  private async call<T>(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: T }> {
    const response = await request(`${this.baseUrl}${path}`, {
      method,
      dispatcher: this.dispatcher,
      headers: {
        authorization: `Bearer ${this.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      headersTimeout: 15_000,
      bodyTimeout: 15_000,
    })
    const text = await response.body.text()
    return { status: response.statusCode, body: (text === '' ? {} : JSON.parse(text)) as T }
  }

  /** Creates a coupon issuing from now for an hour; throws ModeUnavailableError on 422 MODE_UNAVAILABLE. */
  async createCoupon(mode: IssueMode, quantity: number, name = `Flash sale (${mode})`): Promise<number> {
    const now = Date.now()
    const { status, body } = await this.call<{ id?: number; code?: string; detail?: string }>(
      'POST',
      '/admin/coupons',
      {
        name,
        discount: { type: 'FIXED', amount: 5000 },
        quantity,
        issueStartsAt: new Date(now - 1_000).toISOString(),
        issueEndsAt: new Date(now + 3_600_000).toISOString(),
        validDays: 30,
        issueMode: mode,
      },
    )
    if (status === 201 && typeof body.id === 'number') return body.id
    if (status === 422 && body.code === 'MODE_UNAVAILABLE')
      throw new ModeUnavailableError(body.detail ?? `mode ${mode} is not available`)
    if (status === 403) throw new Error('the server refused the admin token (403)')
    throw new Error(
      `creating a ${mode} coupon failed: ${status} ${body.code ?? ''} ${body.detail ?? ''}`.trim(),
    )
  }

  async stats(couponId: number): Promise<CouponStats> {
    const { status, body } = await this.call<{ stats?: CouponStats; detail?: string }>(
      'GET',
      `/admin/coupons/${couponId}`,
    )
    if (status !== 200 || body.stats === undefined)
      throw new Error(`reading coupon ${couponId} failed: ${status} ${body.detail ?? ''}`.trim())
    return body.stats
  }

  /** The server's reconciliation of the coupon's Redis state against Postgres (dead letters included). */
  async audit(couponId: number): Promise<CouponAudit> {
    const { status, body } = await this.call<CouponAudit>('GET', `/admin/coupons/${couponId}/audit`)
    if (status !== 200) throw new Error(`audit of coupon ${couponId} failed: ${status}`)
    return body
  }
}
