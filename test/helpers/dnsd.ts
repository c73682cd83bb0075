/**
 * Shared by the dnsd unit tests: a desired-state document with every name
 * form, queries built and responses read with dns-packet (never the code
 * under test), and a seeded PRNG.
 *
 * Networks: front 10.0.1.0/24, back 10.0.2.0/24, other 10.0.3.0/24.
 * Local tasks: c1 (front only), w1 (back only), b1 (front + back), web1 (front + back, a web task).
 * Services: web (vip; front VIP .100 + alias www, back VIP .100; port http/tcp 80),
 *           api (dnsrr on back; alias api-alias; port grpc/tcp 9000),
 *           db (vip on other only: no local task is there).
 */
import dnsPacket, { type Answer, type DecodedPacket, type Packet, type RecordType } from 'dns-packet'
import { parseDesiredState, type DesiredState } from '../../netd/desired-state.ts'
import { answerQuery, type Outcome } from '../../dnsd/answer.ts'
import type { DnsTables } from '../../dnsd/records.ts'

export function fixtureInput (): Record<string, any> {
  return {
    version: 1,
    revision: 3,
    networks: [
      { id: 'front', name: 'front', subnet: '10.0.1.0/24', gateway: '10.0.1.1', vni: 4101 },
      { id: 'back', name: 'back', subnet: '10.0.2.0/24', gateway: '10.0.2.1', vni: 4102 },
      { id: 'other', name: 'other', subnet: '10.0.3.0/24', gateway: '10.0.3.1', vni: 4103 }
    ],
    endpoints: [
      { task: 'c1', network: 'front', ip: '10.0.1.10', mac: '02:42:0a:00:01:0a', name: 'client.1.c1' },
      { task: 'w1', network: 'back', ip: '10.0.2.10', mac: '02:42:0a:00:02:0a', name: 'worker.1.w1' },
      { task: 'b1', network: 'front', ip: '10.0.1.11', mac: '02:42:0a:00:01:0b', name: 'both.1.b1' },
      { task: 'b1', network: 'back', ip: '10.0.2.11', mac: '02:42:0a:00:02:0b', name: 'both.1.b1' },
      { task: 'web1', network: 'front', ip: '10.0.1.20', mac: '02:42:0a:00:01:14', service: 'svc-web', name: 'web.1.web1' },
      { task: 'web1', network: 'back', ip: '10.0.2.20', mac: '02:42:0a:00:02:14', service: 'svc-web', name: 'web.1.web1' }
    ],
    remoteEndpoints: [
      { network: 'front', ip: '10.0.1.21', mac: '02:42:0a:00:01:15', node: '192.168.5.2', task: 'web2', service: 'svc-web', name: 'web.2.web2' },
      { network: 'back', ip: '10.0.2.21', mac: '02:42:0a:00:02:15', node: '192.168.5.2', task: 'web2', service: 'svc-web', name: 'web.2.web2' },
      { network: 'front', ip: '10.0.1.22', mac: '02:42:0a:00:01:16', node: '192.168.5.3', task: 'web3', service: 'svc-web', name: 'web.3.web3', healthy: false },
      { network: 'back', ip: '10.0.2.30', mac: '02:42:0a:00:02:1e', node: '192.168.5.2', task: 'api1', service: 'svc-api', name: 'api.1.api1' },
      { network: 'back', ip: '10.0.2.31', mac: '02:42:0a:00:02:1f', node: '192.168.5.3', task: 'api2', service: 'svc-api', name: 'api.2.api2' },
      { network: 'back', ip: '10.0.2.32', mac: '02:42:0a:00:02:20', node: '192.168.5.3', task: 'api3', service: 'svc-api', name: 'api.3.api3' },
      { network: 'back', ip: '10.0.2.33', mac: '02:42:0a:00:02:21', node: '192.168.5.3', task: 'api4', service: 'svc-api', name: 'api.4.api4', healthy: false },
      { network: 'other', ip: '10.0.3.10', mac: '02:42:0a:00:03:0a', node: '192.168.5.2', task: 'db1', service: 'svc-db', name: 'db.1.db1' }
    ],
    services: [
      {
        id: 'svc-web',
        name: 'web',
        endpointMode: 'vip',
        networks: [{ network: 'front', vip: '10.0.1.100', aliases: ['www'] }, { network: 'back', vip: '10.0.2.100' }],
        ports: [{ name: 'http', protocol: 'tcp', target: 80, published: 8080 }, { protocol: 'tcp', target: 443 }]
      },
      {
        id: 'svc-api',
        name: 'api',
        endpointMode: 'dnsrr',
        networks: [{ network: 'back', aliases: ['api-alias'] }],
        ports: [{ name: 'grpc', protocol: 'tcp', target: 9000 }]
      },
      { id: 'svc-db', name: 'db', endpointMode: 'vip', networks: [{ network: 'other', vip: '10.0.3.100' }] }
    ]
  }
}

export const fixture = (): DesiredState => parseDesiredState(fixtureInput())

// dns-packet decodes `rcode`, but its type definitions omit it.
export type Reply = DecodedPacket & { rcode: string }
export const decode = (wire: Buffer): Reply => dnsPacket.decode(wire) as Reply
export const data = (a: Answer): unknown => ('data' in a ? a.data : undefined)

export const edns = (size: number, extra: Record<string, unknown> = {}): Partial<Packet> => ({
  additionals: [{ type: 'OPT', name: '.', udpPayloadSize: size, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [], ...extra } as Answer]
})

export function query (name: string, type: RecordType = 'A', extra: Partial<Packet> = {}, id = 4242): Buffer {
  return dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type, class: 'IN' }], ...extra })
}

export interface Asked { outcome: Outcome, reply: Reply | null }

/** Asks `name` as `task`; decodes the response when there is one. */
export function ask (tables: DnsTables, task: string, name: string, type: RecordType = 'A', options: { extra?: Partial<Packet>, transport?: 'udp' | 'tcp', rotation?: number } = {}): Asked {
  const outcome = answerQuery(tables, task, query(name, type, options.extra), options.transport ?? 'udp', options.rotation ?? 0)
  const reply = outcome.kind === 'answer' || outcome.kind === 'error' ? decode(outcome.response) : null
  return { outcome, reply }
}

/** The answer-section data of a local answer (A: addresses; PTR: names; SRV: objects). */
export function answersOf (asked: Asked): unknown[] {
  if (asked.outcome.kind !== 'answer' || asked.reply === null) return [`not an answer: ${asked.outcome.kind}`]
  return (asked.reply.answers ?? []).map(data)
}

export { prng } from './prng.ts'
