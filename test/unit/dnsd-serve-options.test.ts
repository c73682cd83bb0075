/** `dnsd serve` options: addresses, defaults, and one clear error listing every bad flag. */
import t from 'tap'
import { parseListen, parseServeOptions } from '../../dnsd/serve-options.ts'

t.test('listen addresses: IPv4:PORT and [IPv6]:PORT only', async (t) => {
  t.same(parseListen('127.0.0.11:53'), { host: '127.0.0.11', port: 53, family: 4 })
  t.same(parseListen('[::1]:5353'), { host: '::1', port: 5353, family: 6 })
  for (const bad of ['127.0.0.11', '::1:53', '[127.0.0.1]:53', 'localhost:53', '127.0.0.1:65536', '127.0.0.1:']) t.equal(parseListen(bad), null, bad)
})

t.test('defaults fill in; the result is frozen', async (t) => {
  const options = parseServeOptions({ document: 'doc.json', as: 'c1', listen: '127.0.0.1:5300' })
  t.match(options, { resolvConf: '/etc/resolv.conf', workers: 1, rateLimit: 2000, logLevel: 'info', worker: undefined })
  t.ok(Object.isFrozen(options))
  t.equal(parseServeOptions({ document: 'd', as: 'c1', listen: '127.0.0.1:53', workers: '4', rateLimit: '100' }).workers, 4, 'flags arrive as strings')
})

t.test('every bad flag in one DNSD_ERR_CONFIG error', async (t) => {
  t.throws(() => parseServeOptions({ as: 'c1', listen: 'nowhere', workers: '0', logLevel: 'loud' }), {
    code: 'DNSD_ERR_CONFIG',
    details: [/^--document: /, /^--listen: must be IPV4:PORT/, /^--workers: /, /^--log-level: /]
  })
  t.throws(() => parseServeOptions({ document: 'd', as: 'c1', listen: '127.0.0.1:0', workers: '2' }), {
    code: 'DNSD_ERR_CONFIG', message: /port 0 cannot be shared/
  }, 'several workers need a port they can all bind')
})
