/**
 * `weft service create/update` and `swarm init` flags → what the manager is
 * sent: every flag of the issue, and a one-line usage error for bad input.
 */
import t from 'tap'
import { parseDuration, formatDuration, humanDuration, stateSince } from '../../cli/durations.ts'
import { generatedName, parseEnv, parseNetwork, parsePublish, specFromCreateFlags, specFromUpdateFlags, splitArgs } from '../../cli/service-flags.ts'
import { parseTaskFilter } from '../../cli/service-commands.ts'
import { initBody } from '../../cli/swarm-commands.ts'
import { template } from '../../cli/swarm-client.ts'
import { serviceSpecSchema } from '../../manager/store/spec.ts'

const usage = { code: 'WEFT_ERR_USAGE' }

t.test('durations, as Docker\'s flags write them', async (t) => {
  t.equal(parseDuration('10s', '--x'), 10_000)
  t.equal(parseDuration('1m30s', '--x'), 90_000)
  t.equal(parseDuration('500ms', '--x'), 500)
  t.equal(parseDuration('1.5h', '--x'), 5_400_000)
  t.equal(parseDuration('0', '--x'), 0)
  t.throws(() => parseDuration('10', '--update-delay'), { ...usage, message: /invalid duration "10" for --update-delay/ })
  t.throws(() => parseDuration('soon', '--x'), usage)
  t.throws(() => parseDuration('10s junk', '--x'), usage)
  t.equal(formatDuration(90_500), '1m30s500ms')
  t.equal(humanDuration(400), 'Less than a second')
  t.equal(humanDuration(48_000), '48 seconds')
  t.equal(humanDuration(70_000), 'About a minute')
  t.equal(humanDuration(14 * 60_000), '14 minutes')
  t.equal(stateSince('running', 0, 48_200), 'Running 48 seconds ago')
  t.equal(stateSince('running', 0, 100), 'Running less than a second ago')
})

t.test('service create: the walkthrough\'s commands', async (t) => {
  t.same(specFromCreateFlags({ replicas: '1', name: 'myapp' }, 'alpine', ['ping', 'shiyanjun.cn']), {
    name: 'myapp', image: 'alpine', args: ['ping', 'shiyanjun.cn'], env: [], mode: { kind: 'replicated', replicas: 1 },
    networks: [], constraints: [], ports: [], labels: {}, restart: {}, update: {}, rollback: {}
  })
  const hello = specFromCreateFlags({ name: 'helloworld', env: ['MYVAR=myvalue', 'FROM_CLI', 'UNSET'], workdir: '/tmp', user: 'my_user' }, 'alpine', ['ping', 'docker.com'], { FROM_CLI: 'here' })
  t.match(hello, { env: ['MYVAR=myvalue', 'FROM_CLI=here'], workdir: '/tmp', user: 'my_user' }, 'a bare KEY takes the CLI\'s value, or is left out')
  t.match(specFromCreateFlags({ replicas: '3', name: 'redis', updateDelay: '10s' }, 'redis:3.0.6', []), { update: { delay: 10_000 } })
  t.match(specFromCreateFlags({ replicas: '3', network: ['my-network'], name: 'myweb' }, 'nginx', []), { networks: [{ network: 'my-network', aliases: [] }] })
  t.match(specFromCreateFlags({ mode: 'global' }, 'agent', []), { mode: { kind: 'global' }, name: /^[a-z]+_[a-z]+$/ })
  const full = specFromCreateFlags({
    name: 'web',
    constraint: ['node.labels.datacenter==bjidc'],
    endpointMode: 'dnsrr',
    publish: ['published=8080,target=80,mode=host'],
    restartCondition: 'on-failure',
    restartDelay: '1s',
    restartMaxAttempts: '3',
    updateParallelism: '2',
    updateFailureAction: 'rollback',
    updateMonitor: '2s',
    updateMaxFailureRatio: '0.5',
    rollbackParallelism: '0',
    label: ['team=blue']
  }, 'nginx', [])
  t.doesNotThrow(() => serviceSpecSchema.parse(full), 'the store\'s schema takes it')
  t.match(full, {
    constraints: ['node.labels.datacenter==bjidc'],
    endpointMode: 'dnsrr',
    ports: [{ published: 8080, target: 80, protocol: 'tcp', mode: 'host' }],
    restart: { condition: 'on-failure', delay: 1000, maxAttempts: 3 },
    update: { parallelism: 2, failureAction: 'rollback', monitor: 2000, maxFailureRatio: 0.5 },
    rollback: { parallelism: 0 },
    labels: { team: 'blue' }
  })
})

t.test('service create: bad flags are one-line usage errors', async (t) => {
  t.throws(() => specFromCreateFlags({ replicas: 'x' }, 'a', []), { ...usage, message: 'invalid value "x" for --replicas: must be a whole number' })
  t.throws(() => specFromCreateFlags({ mode: 'global', replicas: '2' }, 'a', []), { ...usage, message: '--replicas can only be used with replicated mode' })
  t.throws(() => specFromCreateFlags({ mode: 'daemon' }, 'a', []), usage)
  t.throws(() => specFromCreateFlags({ endpointMode: 'ipvs' }, 'a', []), { message: 'invalid value "ipvs" for --endpoint-mode: must be vip or dnsrr' })
  t.throws(() => specFromCreateFlags({ restartCondition: 'always' }, 'a', []), usage)
  t.throws(() => specFromCreateFlags({ updateFailureAction: 'panic' }, 'a', []), usage)
  t.throws(() => specFromCreateFlags({ updateMaxFailureRatio: '2' }, 'a', []), usage)
  t.throws(() => specFromCreateFlags({ env: ['=x'] }, 'a', []), usage)
  t.throws(() => specFromCreateFlags({ label: ['=x'] }, 'a', []), usage)
})

t.test('--publish and --network', async (t) => {
  t.same(parsePublish('published=8080,target=80'), { published: 8080, target: 80, protocol: 'tcp', mode: 'ingress' })
  t.same(parsePublish('p=53,t=53,protocol=udp,mode=host,name=dns'), { name: 'dns', published: 53, target: 53, protocol: 'udp', mode: 'host' })
  t.same(parsePublish('8080:80/udp'), { published: 8080, target: 80, protocol: 'udp', mode: 'ingress' })
  t.same(parsePublish('target=80'), { target: 80, protocol: 'tcp', mode: 'ingress' }, 'declared, not published')
  for (const bad of ['8080', 'published=99999,target=80', 'published=80', 'target=80,protocol=sctp', 'target=80,mode=any', 'target=80,color=red', 'oops']) {
    t.throws(() => parsePublish(bad), { ...usage, message: new RegExp(`^invalid value "${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}" for --publish: `) }, bad)
  }
  t.same(parseNetwork('my-network'), { network: 'my-network', aliases: [] })
  t.same(parseNetwork('name=front,alias=www,alias=web'), { network: 'front', aliases: ['www', 'web'] })
  t.throws(() => parseNetwork('alias=www'), usage)
  t.throws(() => parseNetwork('name=front,color=red'), usage)
  t.same(parseEnv(['A=1', 'B', 'C'], { B: '2' }), ['A=1', 'B=2'])
})

t.test('service update: changes on top of the current spec', async (t) => {
  const current = serviceSpecSchema.parse({
    name: 'redis', image: 'redis:3.0.6', args: ['redis-server'], env: ['A=1', 'B=2'], mode: { kind: 'replicated', replicas: 3 },
    networks: [{ network: 'netid1' }], constraints: ['node.role==worker'], ports: [{ target: 80, published: 8080 }], labels: { a: '1' }
  })
  const ids: Record<string, string> = { front: 'netid1', back: 'netid2', netid1: 'netid1', netid2: 'netid2' }
  const networkId = (ref: string): string => ids[ref]!
  t.same(specFromUpdateFlags(current, {}, networkId), current, 'no flag, no change')
  const next = specFromUpdateFlags(current, {
    image: 'redis:3.0.7',
    args: 'redis-server --port "6 380" --save \'\'',
    replicas: '5',
    envAdd: ['B=3', 'C=4'],
    envRm: ['A'],
    constraintAdd: ['node.labels.zone==east'],
    constraintRm: ['node.role==worker'],
    networkAdd: ['back'],
    networkRm: ['front'],
    publishAdd: ['published=9090,target=90'],
    publishRm: ['80'],
    labelAdd: ['b=2'],
    labelRm: ['a'],
    updateDelay: '10s'
  }, networkId)
  t.match(next, {
    image: 'redis:3.0.7',
    args: ['redis-server', '--port', '6 380', '--save', ''],
    mode: { kind: 'replicated', replicas: 5 },
    env: ['B=3', 'C=4'],
    constraints: ['node.labels.zone==east'],
    networks: [{ network: 'back', aliases: [] }],
    ports: [{ published: 9090, target: 90 }],
    labels: { b: '2' },
    update: { delay: 10_000, parallelism: 1, failureAction: 'pause' }
  })
  t.doesNotThrow(() => serviceSpecSchema.parse(next))
  t.throws(() => specFromUpdateFlags({ ...current, mode: { kind: 'global' } }, { replicas: '2' }, networkId), usage)
  t.throws(() => specFromUpdateFlags(current, { publishRm: ['http'] }, networkId), usage)
})

t.test('--args splits like a shell', async (t) => {
  t.same(splitArgs('sh -c "echo $HOME; sleep 1"'), ['sh', '-c', 'echo $HOME; sleep 1'])
  t.same(splitArgs(' a\\ b  \'c d\' "e\\"f" '), ['a b', 'c d', 'e"f'])
  t.same(splitArgs('""'), [''])
  t.throws(() => splitArgs('"open'), usage)
})

t.test('swarm init flags', async (t) => {
  t.same(initBody({ advertiseAddr: '192.168.1.107', listenAddr: '0.0.0.0:2377', defaultAddrPool: ['10.10.0.0/16'], defaultAddrPoolMaskLength: '26', dispatcherHeartbeat: '1s' }), {
    advertiseAddr: '192.168.1.107', listenAddr: '0.0.0.0:2377', defaultAddrPool: ['10.10.0.0/16'], subnetSize: 26, dispatcherHeartbeatMs: 1000
  })
  t.same(initBody({}), { dispatcherHeartbeatMs: 5000 })
  t.throws(() => initBody({ advertiseAddr: '1.2.3.4:99999' }), { code: 'CA_ERR_INVALID' })
  t.throws(() => initBody({ defaultAddrPoolMaskLength: '31' }), usage)
  t.throws(() => initBody({ dispatcherHeartbeat: '10ms' }), usage)
})

t.test('--filter and --format', async (t) => {
  t.same(parseTaskFilter(['desired-state=running', 'node=h2']), { desiredState: 'running', node: 'h2' })
  t.throws(() => parseTaskFilter(['desired-state=asleep']), usage)
  t.throws(() => parseTaskFilter(['label=x']), usage)
  t.equal(template('{{.Name}}\\t{{.Replicas}}', { Name: 'web', Replicas: '3/3' }), 'web\t3/3')
  t.equal(template('{{json .}}', { a: 1 }), '{"a":1}')
  t.throws(() => template('{{.Nope}}', { a: 1 }), usage)
  t.match(generatedName(() => 0), /^[a-z]+_[a-z]+$/)
})

t.test('health check, stop grace period and drain delay flags', async (t) => {
  const created = specFromCreateFlags({ healthHttp: '/healthz:8080', healthInterval: '1s', healthRetries: '2', stopGracePeriod: '3s', drainDelay: '500ms' }, 'web', [])
  t.match(created, { healthcheck: { test: { kind: 'http', path: '/healthz', port: 8080 }, interval: 1000, retries: 2 }, stopGracePeriod: 3000, drainDelay: 500 })
  const parsed = serviceSpecSchema.parse(created)
  t.match(parsed.healthcheck, { timeout: 3000, startPeriod: 0 }, 'what is not given takes the defaults')
  t.match(specFromCreateFlags({ healthCmd: 'curl -f localhost' }, 'web', []), { healthcheck: { test: { kind: 'cmd', command: 'curl -f localhost' } } })
  t.match(specFromCreateFlags({ healthTcp: '6379', healthStartPeriod: '10s' }, 'redis', []), { healthcheck: { test: { kind: 'tcp', port: 6379 }, startPeriod: 10_000 } })
  t.equal(specFromCreateFlags({}, 'web', []).healthcheck, undefined, 'no flag, no check')

  const current = serviceSpecSchema.parse(created)
  const networkId = (ref: string): string => ref
  t.match(specFromUpdateFlags(current, { healthTimeout: '2s' }, networkId), { healthcheck: { test: { kind: 'http' }, interval: 1000, timeout: 2000 } }, 'update changes one setting, keeps the rest')
  t.match(specFromUpdateFlags(current, { healthTcp: '80' }, networkId), { healthcheck: { test: { kind: 'tcp', port: 80 }, interval: 1000 } }, 'a new test keeps the timing')
  t.equal(specFromUpdateFlags(current, { healthcheck: false }, networkId).healthcheck, undefined, '--no-healthcheck removes it')
  t.match(specFromUpdateFlags(current, {}, networkId), { stopGracePeriod: 3000, drainDelay: 500 })

  t.throws(() => specFromCreateFlags({ healthCmd: 'x', healthTcp: '80' }, 'a', []), { ...usage, message: '--health-cmd, --health-tcp and --health-http are exclusive: give one' })
  t.throws(() => specFromCreateFlags({ healthTcp: '70000' }, 'a', []), { ...usage, message: 'invalid value "70000" for --health-tcp: must be a port from 1 to 65535' })
  t.throws(() => specFromCreateFlags({ healthHttp: 'healthz' }, 'a', []), { ...usage, message: 'invalid value "healthz" for --health-http: must be PATH:PORT, like /healthz:8080' })
  t.throws(() => specFromCreateFlags({ healthInterval: '1s' }, 'a', []), { ...usage, message: /need a check/ })
  t.throws(() => specFromCreateFlags({ healthcheck: false, healthTcp: '80' }, 'a', []), { ...usage, message: '--no-healthcheck conflicts with the other --health-* flags' })
  t.throws(() => specFromCreateFlags({ healthRetries: 'x', healthTcp: '80' }, 'a', []), usage)
  t.throws(() => specFromCreateFlags({ drainDelay: 'soon' }, 'a', []), usage)
})
