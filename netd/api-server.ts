/**
 * netd's local API: HTTP with JSON bodies on a unix socket, for the `netd`
 * and `weft` commands. Errors carry netd's stable codes.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { chmod, mkdir, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'
import { connect } from 'node:net'
import type { Logger } from 'pino'
import type { NetdDaemon } from './daemon.ts'
import type { NetdMetrics } from './metrics.ts'
import { NetdError } from './errors.ts'
import { endpointRows, fdbRows, networkRows } from './views.ts'
import { listRecords } from '../dnsd/answer.ts'
import { explainResolution } from '../dnsd/explain.ts'

const MAX_BODY = 16 * 1024 * 1024

type Handler = (query: URLSearchParams, body: unknown) => Promise<unknown>

export function routes (daemon: NetdDaemon): Map<string, Handler> {
  const prefix = (): string => daemon.node.prefix
  return new Map<string, Handler>([
    ['GET /status', async () => daemon.status()],
    ['GET /state', async () => daemon.document],
    ['PUT /state', async (_query, body) => await daemon.apply(body)],
    ['POST /reconcile', async () => await daemon.reconcile()],
    ['GET /check', async () => {
      const drift = await daemon.drift()
      return { ok: drift.length === 0, drift }
    }],
    ['POST /leave', async () => await daemon.leave()],
    ['GET /networks', async () => networkRows(daemon.document, await daemon.observe(), prefix())],
    ['GET /endpoints', async (query) => {
      const network = query.get('network') ?? undefined
      if (network !== undefined) requireNetwork(daemon, network)
      return endpointRows(daemon.document, await daemon.observe(), prefix(), network)
    }],
    ['GET /dns', async (query) => {
      const tables = daemon.dns.server.tables
      const tasks = query.get('as') ? [requireTask(daemon, query.get('as')!)] : [...new Set(daemon.document.endpoints.map((e) => e.task))]
      return tasks.flatMap((task) => listRecords(tables, task).map((record) => ({ task, ...record })))
    }],
    ['GET /dns/query', async (query) => {
      const name = query.get('name')
      if (!name) throw new NetdError('NETD_ERR_API', 'the name query parameter is required')
      const task = requireTask(daemon, query.get('as') ?? '')
      return await explainResolution(daemon.dns.server, task, name, (query.get('type') ?? 'A').toUpperCase())
    }],
    ['GET /lb', async (query) => await daemon.lb.stats(query.get('service') ?? undefined)],
    ['GET /fdb', async (query) => {
      const network = query.get('network')
      if (!network) throw new NetdError('NETD_ERR_API', 'the network query parameter is required')
      requireNetwork(daemon, network)
      return fdbRows(daemon.document, await daemon.observe(), network)
    }]
  ])
}

/** Accepts a network id or name; the kernel is keyed by id. */
function requireNetwork (daemon: NetdDaemon, network: string): void {
  if (!daemon.document.networks.some((n) => n.id === network)) {
    throw new NetdError('NETD_ERR_API', `no network "${network}" in the applied document (known: ${daemon.document.networks.map((n) => n.id).join(', ') || 'none'})`)
  }
}

function requireTask (daemon: NetdDaemon, task: string): string {
  if (!daemon.document.endpoints.some((e) => e.task === task)) {
    throw new NetdError('NETD_ERR_API', `no local task "${task}" (local tasks: ${[...new Set(daemon.document.endpoints.map((e) => e.task))].join(', ') || 'none'})`)
  }
  return task
}

async function readBody (request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_BODY) throw new NetdError('NETD_ERR_API', `request body larger than ${MAX_BODY} bytes`)
    chunks.push(chunk)
  }
  if (size === 0) return undefined
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch (error) {
    throw new NetdError('NETD_ERR_INVALID_DOCUMENT', `request body is not JSON: ${(error as Error).message}`)
  }
}

function send (response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' })
  response.end(JSON.stringify(body))
}

const STATUS_BY_CODE: Record<string, number> = { NETD_ERR_INVALID_DOCUMENT: 400, NETD_ERR_API: 400, NETD_ERR_KERNEL: 500 }

export function createApiServer (daemon: NetdDaemon, metrics: NetdMetrics, log: Logger, extraRoutes: ReadonlyMap<string, Handler> = new Map()): Server {
  const table = new Map([...routes(daemon), ...extraRoutes])
  return createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://netd')
    if (request.method === 'GET' && url.pathname === '/metrics') {
      metrics.registry.metrics().then((text) => {
        response.writeHead(200, { 'content-type': metrics.registry.contentType })
        response.end(text)
      }, (error: Error) => send(response, 500, { code: 'NETD_ERR_API', message: error.message }))
      return
    }
    const handler = table.get(`${request.method} ${url.pathname}`)
    if (!handler) {
      send(response, 404, { code: 'NETD_ERR_API', message: `no such endpoint: ${request.method} ${url.pathname}` })
      return
    }
    readBody(request)
      .then(async (body) => await handler(url.searchParams, body))
      .then((result) => send(response, 200, result), (error: unknown) => {
        const known = error instanceof NetdError
        if (!known) log.error({ err: error, route: url.pathname }, 'request failed')
        send(response, known ? STATUS_BY_CODE[error.code] ?? 500 : 500, {
          code: known ? error.code : 'NETD_ERR_API',
          message: (error as Error).message,
          details: known ? error.details : []
        })
      })
  })
}

/** Binds the socket, replacing a stale file from a crashed netd but never a live one. */
export async function listenOnSocket (server: Server, path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  if (await socketAnswers(path)) throw new NetdError('NETD_ERR_CONFIG', `another netd is already listening on ${path}`)
  await unlink(path).catch((error: NodeJS.ErrnoException) => { if (error.code !== 'ENOENT') throw error })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => { server.off('error', reject); resolve() })
  })
  await chmod(path, 0o660)
}

function socketAnswers (path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path)
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}
