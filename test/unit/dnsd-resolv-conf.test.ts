/**
 * resolv.conf as glibc reads it (resolv.conf(5), res_init.c), the upstreams
 * dnsd takes from it, and the file tasks get.
 */
import t from 'tap'
import { DNSD_ADDRESS, parseResolvConf, taskResolvConf, upstreamsOf } from '../../dnsd/resolv-conf.ts'

t.test('nameservers: IPv4 and IPv6 as written, first word only, invalid ones skipped', async (t) => {
  const conf = parseResolvConf([
    'nameserver 192.0.2.53',
    'nameserver 2001:db8::53 # trailing words are ignored',
    'nameserver fe80::1%eth0',
    'nameserver not-an-address',
    'nameserver',
    '  nameserver 192.0.2.99', // not at the start of the line: glibc ignores it
    'nameservers 192.0.2.98' // not the keyword
  ].join('\n'))
  t.same(conf.nameservers, ['192.0.2.53', '2001:db8::53', 'fe80::1%eth0'])
})

t.test('comments with # and ; and CRLF line ends', async (t) => {
  const conf = parseResolvConf('# nameserver 192.0.2.1\r\n; nameserver 192.0.2.2\r\nnameserver 192.0.2.3\r\nsearch a.example\r\n')
  t.same(conf.nameservers, ['192.0.2.3'])
  t.same(conf.search, ['a.example'])
})

t.test('search and domain: the last one wins, domain takes one word', async (t) => {
  t.same(parseResolvConf('search a.example b.example\ndomain c.example d.example\n').search, ['c.example'])
  t.same(parseResolvConf('domain c.example\nsearch a.example b.example\n').search, ['a.example', 'b.example'])
  t.same(parseResolvConf('search a.example b.example # old\n').search, ['a.example', 'b.example'], 'a trailing comment is not a domain')
  t.same(parseResolvConf('search a.example\nsearch\n').search, ['a.example'], 'a bare keyword changes nothing')
})

t.test('at most 6 search domains', async (t) => {
  t.same(parseResolvConf('search d1 d2 d3 d4 d5 d6 d7 d8\n').search, ['d1', 'd2', 'd3', 'd4', 'd5', 'd6'])
})

t.test('options accumulate across lines, later values win, glibc caps apply', async (t) => {
  const conf = parseResolvConf('options ndots:2 timeout:2 rotate\noptions ndots:20 attempts:9 edns0 rotate\noptions timeout:45 ndots:x\n')
  t.same(conf.options, { ndots: 15, timeout: 30, attempts: 5, other: ['rotate', 'edns0'] })
  t.same(parseResolvConf('nameserver 192.0.2.1\n').options, { other: [] }, 'absent options stay absent')
})

t.test('empty input', async (t) => {
  t.same(parseResolvConf(''), { nameservers: [], search: [], options: { other: [] } })
})

t.test('upstreamsOf excludes dnsd itself and duplicates, keeps loopback resolvers, at most three', async (t) => {
  const conf = parseResolvConf('nameserver 127.0.0.11\nnameserver 127.0.0.53\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n')
  t.same(upstreamsOf(conf), [{ address: '127.0.0.53', port: 53 }, { address: '::1', port: 53 }, { address: '192.0.2.1', port: 53 }])
  t.same(upstreamsOf(conf, '127.0.0.53'), [{ address: '127.0.0.11', port: 53 }, { address: '::1', port: 53 }, { address: '192.0.2.1', port: 53 }])
  t.same(upstreamsOf(parseResolvConf(`nameserver ${DNSD_ADDRESS}\n`)), [], 'only ourselves: no upstream')
})

t.test('taskResolvConf: dnsd only, the host search list, options as glibc read them', async (t) => {
  const host = parseResolvConf('nameserver 192.0.2.1\nnameserver 192.0.2.2\nsearch corp.example lab.example\noptions rotate ndots:3\noptions timeout:99 edns0\n')
  const text = taskResolvConf(host)
  const lines = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'))
  t.same(lines, ['nameserver 127.0.0.11', 'search corp.example lab.example', 'options ndots:3 timeout:30 rotate edns0'])
  t.ok(text.endsWith('\n'))
  // Round trip: a task's glibc reads back what the node's glibc read.
  const back = parseResolvConf(text)
  t.same(back.nameservers, ['127.0.0.11'])
  t.same(back.search, host.search)
  t.same(back.options, host.options)
})

t.test('taskResolvConf without search or options writes just the name server', async (t) => {
  const lines = taskResolvConf(parseResolvConf('nameserver 192.0.2.1\n')).split('\n').filter((l) => l !== '' && !l.startsWith('#'))
  t.same(lines, ['nameserver 127.0.0.11'])
})
