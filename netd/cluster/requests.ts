/**
 * The bodies of netd's swarm endpoints (api-routes.ts), as the `weft` CLI
 * sends them: one schema each, defaults in one place.
 */
import { z } from 'zod'
import { SwarmError } from './errors.ts'

/** Swarm's default: nodes heartbeat every 5 s, and are down after three missed periods. */
export const DEFAULT_HEARTBEAT_MS = 5000

export const initRequestSchema = z.strictObject({
  /** `ADDR[:PORT]` other nodes reach the manager at; default netd's --advertise-addr, port 2377. */
  advertiseAddr: z.string().min(1).optional(),
  /** `ADDR[:PORT]` the manager listens on; default 0.0.0.0 and the advertised port. */
  listenAddr: z.string().min(1).optional(),
  defaultAddrPool: z.array(z.string().min(1)).min(1).optional(),
  subnetSize: z.int().min(8).max(30).optional(),
  dispatcherHeartbeatMs: z.int().min(100).max(3_600_000).default(DEFAULT_HEARTBEAT_MS)
})

export const joinRequestSchema = z.strictObject({
  token: z.string().min(1).max(256),
  /** `ADDR[:PORT]` of a manager. */
  remoteAddr: z.string().min(1)
})

export const leaveRequestSchema = z.strictObject({
  force: z.boolean().default(false)
})

export type InitRequest = z.output<typeof initRequestSchema>
export type JoinRequest = z.output<typeof joinRequestSchema>

export function parseRequest<S extends z.ZodType> (schema: S, body: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(body ?? {})
  if (!parsed.success) {
    throw new SwarmError('NETD_ERR_SWARM_REQUEST', `invalid ${what} request: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}`)
  }
  return parsed.data
}
