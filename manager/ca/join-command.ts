/**
 * The words around a join token, as Swarm prints them after `swarm init` and
 * for `swarm join-token ROLE`, with `weft` in place of `docker`:
 *
 *     To add a worker to this swarm, run the following command:
 *
 *     weft swarm join \
 *     --token SWMTKN-1-4dm09nzp3xic15uebqja69o2552b75pcg7or0g9t2eld9ehqt3-1kb79trnv6fbydvl9vif3fsch \
 *     192.168.1.107:2377
 *
 * and the reading of the manager address a node joins (`ADDR[:PORT]`, port
 * 2377 by default).
 */
import { isIP } from 'node:net'
import { CaError } from './errors.ts'
import type { NodeRole } from './node-identity.ts'

export const DEFAULT_MANAGER_PORT = 2377

export interface ManagerAddress {
  readonly host: string
  readonly port: number
}

/** `weft swarm join --token TOKEN ADDR:PORT`, broken over three lines as the article shows it. */
export function formatJoinCommand (token: string, address: ManagerAddress): string {
  return `weft swarm join \\\n--token ${token} \\\n${formatManagerAddress(address)}`
}

/** What `weft swarm join-token ROLE` prints (without `-q`). */
export function joinInstructions (role: NodeRole, token: string, address: ManagerAddress): string {
  return `To add a ${role} to this swarm, run the following command:\n\n${formatJoinCommand(token, address)}\n`
}

/** What `weft swarm init` prints: the worker's command, and where to find the manager's. */
export function initMessage (nodeId: string, workerToken: string, address: ManagerAddress): string {
  return `Swarm initialized: current node (${nodeId}) is now a manager.\n\n` +
    joinInstructions('worker', workerToken, address) +
    '\nTo add a manager to this swarm, run \'weft swarm join-token manager\' and follow the instructions.\n'
}

/** `host:port`, with an IPv6 host in brackets. */
export function formatManagerAddress (address: ManagerAddress): string {
  return isIP(address.host) === 6 ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`
}

/** Reads `ADDR`, `ADDR:PORT`, `[V6]` or `[V6]:PORT`; the port defaults to 2377. */
export function parseManagerAddress (text: string): ManagerAddress {
  const input = text.trim()
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(input)
  let host: string
  let port: string | undefined
  if (bracketed !== null) {
    host = bracketed[1]!
    port = bracketed[2]
    if (isIP(host) !== 6) throw addressError(text, 'only an IPv6 address goes in brackets')
  } else if (isIP(input) === 6) {
    host = input
  } else {
    const at = input.lastIndexOf(':')
    host = at === -1 ? input : input.slice(0, at)
    port = at === -1 ? undefined : input.slice(at + 1)
    if (!/^[A-Za-z0-9.-]+$/.test(host)) throw addressError(text, 'the host must be an address or a host name')
  }
  if (port === undefined) return Object.freeze({ host, port: DEFAULT_MANAGER_PORT })
  const number = Number(port)
  if (!/^\d{1,5}$/.test(port) || number < 1 || number > 65535) throw addressError(text, 'the port must be 1-65535')
  return Object.freeze({ host, port: number })
}

function addressError (text: string, why: string): CaError {
  return new CaError('CA_ERR_INVALID', `manager address "${text}" is not ADDR[:PORT]: ${why}`)
}
