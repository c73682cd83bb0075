/**
 * `netd dns query NAME --as TASK`: runs the resolution path a task's query
 * takes and says why the answer is what it is — the local rule and network
 * that produced it, or the upstream (or cache) that answered a forwarded name.
 */
import { randomInt } from 'node:crypto'
import dnsPacket from 'dns-packet'
import { explain } from './answer.ts'
import type { DnsServer } from './server.ts'

export interface Resolution {
  name: string
  type: string
  source: 'local' | 'cache' | 'upstream' | 'servfail'
  rule: string | null
  networks: string[]
  upstream: string | null
  rcode: string
  answers: string[]
}

export async function explainResolution (server: DnsServer, task: string, name: string, type: string): Promise<Resolution> {
  const local = explain(server.tables, task, name, type)
  if (local.source === 'local') {
    return { name, type, source: 'local', rule: local.rule, networks: local.networks, upstream: null, rcode: 'NOERROR', answers: local.answers }
  }
  const query = dnsPacket.encode({
    type: 'query', id: randomInt(65536), flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as dnsPacket.RecordType, class: 'IN' }]
  })
  const result = await server.forwarder.resolve(query)
  const decoded = dnsPacket.decode(result.response)
  return {
    name,
    type,
    source: result.source,
    rule: 'forward',
    networks: [],
    upstream: result.upstream,
    // dns-packet decodes the rcode but its typings leave it out.
    rcode: (decoded as { rcode?: string }).rcode ?? 'NOERROR',
    answers: (decoded.answers ?? []).map((a) => `${a.name} ${'ttl' in a ? a.ttl : ''} ${a.type} ${presentData(a)}`)
  }
}

function presentData (answer: dnsPacket.Answer): string {
  const data = (answer as { data?: unknown }).data
  if (Buffer.isBuffer(data)) return data.toString('hex')
  if (Array.isArray(data)) return data.map((d) => Buffer.isBuffer(d) ? d.toString() : String(d)).join(' ')
  return typeof data === 'object' && data !== null ? JSON.stringify(data) : String(data)
}
