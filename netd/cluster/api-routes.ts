/**
 * netd's swarm endpoints, on its local API socket (api-server.ts registers
 * them): what the `weft` CLI's swarm, node, network and service commands
 * call. Cluster commands (`POST /swarm/control`) go to the manager module in
 * this process; a worker answers Swarm's "not a swarm manager".
 *
 * Errors keep their registry code across the socket (STORE_ERR_*,
 * CA_ERR_*, API_ERR_*, MANAGER_ERR_*, NETD_ERR_*): they are carried as
 * NetdError, which the API server reports with the code it holds.
 */
import { NetdError } from '../errors.ts'
import { REGISTRY_CODE } from '../../manager/api/errors.ts'
import { initRequestSchema, joinRequestSchema, leaveRequestSchema, parseRequest } from './requests.ts'
import type { SwarmNode } from './swarm-node.ts'

type Handler = (query: URLSearchParams, body: unknown) => Promise<unknown>

export function swarmRoutes (swarm: SwarmNode): Map<string, Handler> {
  const routes = new Map<string, Handler>([
    ['POST /swarm/init', async (_query, body) => await swarm.init(parseRequest(initRequestSchema, body, 'swarm init'))],
    ['POST /swarm/join', async (_query, body) => await swarm.join(parseRequest(joinRequestSchema, body, 'swarm join'))],
    ['POST /swarm/leave', async (_query, body) => {
      await swarm.leave(parseRequest(leaveRequestSchema, body, 'swarm leave').force)
      return {}
    }],
    ['GET /swarm/info', async () => swarm.info()],
    ['POST /swarm/control', async (_query, body) => await swarm.control(body)],
    /** For `netd exec`, which runs in the CLI's process and reads the tasks' state directory. */
    ['GET /swarm/runtime', async () => ({ stateDir: swarm.runtime.stateDir })],
    ['GET /swarm/tasks', async () => [...swarm.runtime.statuses().values()]],
    ['GET /swarm/health', async () => [...swarm.health.reports()].map(([task, report]) => ({ task, ...report }))]
  ])
  return new Map([...routes].map(([key, handler]) => [key, withCodes(handler)]))
}

function withCodes (handler: Handler): Handler {
  return async (query, body) => {
    try {
      return await handler(query, body)
    } catch (error) {
      throw asNetdError(error)
    }
  }
}

/** An error with a registry code, as a NetdError carrying that code; anything else unchanged (logged by the server). */
export function asNetdError (error: unknown): unknown {
  if (error instanceof NetdError) return error
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code !== 'string' || !REGISTRY_CODE.test(code)) return error
  const message = (error as Error).message.split('\n', 1)[0] ?? ''
  const wrapped = new NetdError('NETD_ERR_API', message)
  Object.defineProperty(wrapped, 'code', { value: code, enumerable: true })
  return wrapped
}
