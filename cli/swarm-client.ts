/**
 * What the swarm, node, network and service commands share: the local netd
 * (its socket from --socket or NETD_SOCKET), the manager's control API
 * through it, and list output (a table, `-q` ids, `--format json` one object
 * per line, or a `{{.Field}}` template).
 */
import type { Command } from 'commander'
import { NetdClient } from '../netd/api-client.ts'
import { DEFAULT_SOCKET } from '../netd/config.ts'
import type { ClusterSnapshot, ControlRequest } from '../manager/control.ts'
import type { CommandInput } from '../manager/store/commands.ts'
import type { SwarmInfo } from '../netd/cluster/swarm-node.ts'
import { formatTable } from './table.ts'
import { usage } from './errors.ts'

export function clientOf (command: Command): NetdClient {
  const socket = command.optsWithGlobals<{ socket?: string }>().socket ?? process.env.NETD_SOCKET ?? DEFAULT_SOCKET
  return new NetdClient(socket)
}

export async function control<T = unknown> (client: NetdClient, request: ControlRequest): Promise<T> {
  return await client.call<T>('POST', '/swarm/control', request)
}

export async function propose (client: NetdClient, command: CommandInput): Promise<{ id?: string, changed: boolean, detail?: Record<string, unknown> }> {
  return await control(client, { op: 'propose', command })
}

export async function snapshot (client: NetdClient): Promise<ClusterSnapshot> {
  return await control<ClusterSnapshot>(client, { op: 'state' })
}

export async function swarmInfo (client: NetdClient): Promise<SwarmInfo> {
  return await client.call<SwarmInfo>('GET', '/swarm/info')
}

export interface ListOptions {
  quiet?: boolean
  format?: string
}

/** Prints rows: ids (-q), JSON lines (--format json), a Go-style template, or the table. */
export function printList<R extends object> (rows: readonly R[], options: ListOptions, columns: readonly string[], table: (rows: readonly R[]) => string[][], idOf: (row: R) => string): void {
  let text: string
  if (options.quiet === true) text = rows.map((r) => `${idOf(r)}\n`).join('')
  else if (options.format === 'json') text = rows.map((r) => `${JSON.stringify(r)}\n`).join('')
  else if (options.format !== undefined && options.format !== 'table') text = rows.map((r) => `${template(options.format!, r)}\n`).join('')
  else text = formatTable(columns, table(rows))
  process.stdout.write(text)
}

/** `{{.Name}}`, `{{json .}}`: the part of Go templates people use with docker's --format. */
export function template (format: string, row: object): string {
  return format.replace(/\{\{\s*(json\s+)?\.([A-Za-z]*)\s*\}\}/g, (_all, json: string | undefined, field: string) => {
    const value = field === '' ? row : (row as Record<string, unknown>)[field]
    if (value === undefined) throw usage(`--format: no field .${field} (fields: ${Object.keys(row).join(', ')})`)
    return json !== undefined || typeof value === 'object' ? JSON.stringify(value) : String(value)
  }).replace(/\\t/g, '\t').replace(/\\n/g, '\n')
}

export function printJson (value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 4)}\n`)
}

export const collect = (value: string, previous: string[] = []): string[] => [...previous, value]
