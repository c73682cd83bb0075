/**
 * The lab's upstream DNS resolver process: serves `dns-zone.ts` answers over UDP and TCP on one
 * address. Runs inside the lab's `dns` namespace, so it can only ever be reached from the lab.
 *
 *   node lab/upstream-dns.ts --listen 192.168.99.2 --zone lab.test --hosts h1=192.168.99.11,...
 */

import dgram from 'node:dgram'
import net from 'node:net'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { parseHosts, respond, type Zone } from './dns-zone.ts'

const PORT = 53
const TCP_IDLE_MS = 30_000

const log = pino({ base: { component: 'upstream-dns' } }, pino.destination(2))

const { values } = parseArgs({
  options: {
    listen: { type: 'string' },
    zone: { type: 'string' },
    hosts: { type: 'string', default: '' },
    www: { type: 'string', default: '192.168.99.200' },
  },
})
if (values.listen === undefined || values.zone === undefined) {
  log.fatal('usage: upstream-dns.ts --listen IPV4 --zone ZONE [--hosts NAME=IPV4,...] [--www IPV4]')
  process.exit(2)
}
const listen = values.listen
const zone: Zone = {
  origin: values.zone.toLowerCase().replace(/\.$/, ''),
  hosts: parseHosts(values.hosts),
  www: values.www,
}

const udp = dgram.createSocket('udp4')
udp.on('message', (msg, rinfo) => {
  const reply = respond(msg, zone, 'udp')
  if (reply !== null) udp.send(reply, rinfo.port, rinfo.address)
})
udp.on('error', (err) => {
  log.fatal({ err }, 'udp socket failed')
  process.exit(1)
})

const tcp = net.createServer((conn) => {
  let pending = Buffer.alloc(0)
  conn.setTimeout(TCP_IDLE_MS, () => conn.destroy())
  conn.on('error', (err) => log.debug({ err }, 'tcp connection error'))
  conn.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk])
    // Each message is framed by a 2-byte length (RFC 1035 4.2.2); several may share one read.
    while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
      const size = pending.readUInt16BE(0)
      const reply = respond(pending.subarray(2, 2 + size), zone, 'tcp')
      pending = pending.subarray(2 + size)
      if (reply !== null) {
        const frame = Buffer.alloc(2 + reply.length)
        frame.writeUInt16BE(reply.length, 0)
        reply.copy(frame, 2)
        conn.write(frame)
      }
    }
  })
})
tcp.on('error', (err) => {
  log.fatal({ err }, 'tcp server failed')
  process.exit(1)
})

udp.bind({ address: listen, port: PORT }, () => {
  tcp.listen({ host: listen, port: PORT }, () => log.info({ listen, zone: zone.origin, hosts: zone.hosts.size }, 'listening'))
})

for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    log.info({ signal: sig }, 'stopping')
    udp.close()
    tcp.close()
    process.exit(0)
  })
}
