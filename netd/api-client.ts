/**
 * Talks to a netd over its unix socket. Used by the `netd` debugging
 * commands, `weft lab`, tests and benchmarks.
 */
import { request } from 'node:http'
import { NetdError, type NetdErrorCode } from './errors.ts'

export class NetdClient {
  readonly socket: string

  constructor (socket: string) {
    this.socket = socket
  }

  async call<T = unknown> (method: 'GET' | 'PUT' | 'POST', path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    return await new Promise<T>((resolve, reject) => {
      const req = request({ socketPath: this.socket, method, path, headers: payload ? { 'content-type': 'application/json' } : {} }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('error', reject)
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let parsed: unknown
          try {
            parsed = JSON.parse(text)
          } catch {
            reject(new NetdError('NETD_ERR_API', `netd answered ${res.statusCode} with non-JSON: ${text.slice(0, 200)}`))
            return
          }
          if ((res.statusCode ?? 500) >= 400) {
            const error = parsed as { code?: NetdErrorCode, message?: string, details?: string[] }
            reject(new NetdError(error.code ?? 'NETD_ERR_API', error.message ?? `netd answered ${res.statusCode}`, error.details ?? []))
          } else {
            resolve(parsed as T)
          }
        })
      })
      req.on('error', (error: NodeJS.ErrnoException) => {
        reject(new NetdError('NETD_ERR_UNREACHABLE', `cannot reach netd at ${this.socket} (${error.code ?? error.message}); is \`netd run\` running? (set --socket or NETD_SOCKET)`))
      })
      req.end(payload)
    })
  }
}
