import dnsPacket, { type Answer, type DecodedPacket, type Packet } from 'dns-packet'
import t from 'tap'
import { parseHosts, respond, type Zone } from '../../lab/dns-zone.ts'

const zone: Zone = { origin: 'lab.test', hosts: parseHosts('h1=192.168.99.11,h2=192.168.99.12'), www: '192.168.99.200' }

function ask(name: string, type: 'A' | 'TXT' | 'AAAA' | 'SOA' = 'A', extra: Partial<Packet> = {}, transport: 'udp' | 'tcp' = 'udp'): Reply | null {
  const query = dnsPacket.encode({ type: 'query', id: 42, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }], ...extra })
  const reply = respond(query, zone, transport)
  return reply === null ? null : decode(reply)
}

// dns-packet decodes `rcode`, but its type definitions omit it.
type Reply = DecodedPacket & { rcode: string }
const decode = (wire: Buffer): Reply => dnsPacket.decode(wire) as Reply
const data = (a: Answer): unknown => ('data' in a ? a.data : undefined)

const edns = (size: number): Partial<Packet> => ({
  additionals: [{ type: 'OPT', name: '.', udpPayloadSize: size, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
})

t.test('hosts, www and txt, case-insensitively', async (t) => {
  const h1 = ask('H1.Lab.Test')
  t.equal(h1?.id, 42)
  t.equal(h1?.rcode, 'NOERROR')
  t.ok(h1?.flag_aa)
  t.same(h1?.answers?.map(data), ['192.168.99.11'])
  t.same(ask('www.lab.test')?.answers?.map(data), ['192.168.99.200'])
  t.same(ask('txt.lab.test', 'TXT')?.answers?.map(data), [[Buffer.from('weft lab')]])
})

t.test('missing names get NXDOMAIN with the SOA, missing types NODATA', async (t) => {
  const nx = ask('nope.lab.test')
  t.equal(nx?.rcode, 'NXDOMAIN')
  t.same(nx?.authorities?.map((a) => a.type), ['SOA'])
  const nodata = ask('h1.lab.test', 'AAAA')
  t.equal(nodata?.rcode, 'NOERROR')
  t.same(nodata?.answers, [])
  t.same(nodata?.authorities?.map((a) => a.type), ['SOA'])
  t.equal(ask('lab.test', 'SOA')?.answers?.[0]?.type, 'SOA')
})

t.test('outside the zone is refused, never forwarded', async (t) => {
  const r = ask('example.com')
  t.equal(r?.rcode, 'REFUSED')
  t.notOk(r?.flag_aa)
  t.equal(ask('notlab.test')?.rcode, 'REFUSED', 'a suffix match must be on a label boundary')
})

t.test('big truncates over UDP beyond 512 bytes or the EDNS0 size, and is complete over TCP', async (t) => {
  const plain = ask('big.lab.test')
  t.ok(plain?.flag_tc)
  t.same(plain?.answers, [])
  const withEdns = ask('big.lab.test', 'A', edns(1232))
  t.ok(withEdns?.flag_tc)
  t.equal(withEdns?.additionals?.[0]?.type, 'OPT', 'EDNS0 is echoed')
  t.notOk(ask('big.lab.test', 'A', edns(4096))?.flag_tc, 'fits a 4096-byte EDNS0 buffer')
  const tcp = ask('big.lab.test', 'A', {}, 'tcp')
  t.notOk(tcp?.flag_tc)
  t.equal(tcp?.answers?.length, 100)
  t.equal(tcp?.answers?.[99] && data(tcp.answers[99]), '10.123.0.100')
})

t.test('slow is never answered', async (t) => {
  t.equal(ask('slow.lab.test'), null)
})

t.test('malformed packets get FORMERR or silence, never an exception', async (t) => {
  t.equal(respond(Buffer.from([1, 2, 3]), zone, 'udp'), null)
  const garbage = Buffer.concat([Buffer.from([0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from([63, 1, 2])])
  const reply = respond(garbage, zone, 'udp')
  t.ok(reply)
  const decoded = decode(reply as Buffer)
  t.equal(decoded.id, 7)
  t.equal(decoded.rcode, 'FORMERR')
  const response = dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'h1.lab.test' }] })
  t.equal(respond(response, zone, 'udp'), null, 'responses are ignored, so two servers cannot loop')
  const notify = dnsPacket.encode({ type: 'query', id: 9, flags: 4 << 11, questions: [{ type: 'SOA', name: 'lab.test' }] })
  t.equal(decode(respond(notify, zone, 'udp') as Buffer).rcode, 'NOTIMP')
})

t.test('--hosts parsing', async (t) => {
  t.same([...parseHosts('H1=1.2.3.4,,x=5.6.7.8')], [['h1', '1.2.3.4'], ['x', '5.6.7.8']])
  t.throws(() => parseHosts('h1'), /invalid --hosts entry "h1"/)
  t.throws(() => parseHosts('h1=foo'), /NAME=IPV4/)
})
