/**
 * The task process spec: what is accepted, the defaults, and one error per
 * problem with the field it concerns. Tests assert the code, not the text.
 */
import t from 'tap'
import { defaultHostname, envFromList, parseTaskProcessSpec, IMAGE_PATTERN } from '../../netd/runtime/spec.ts'

const base = { task: 'x7q3k2m9p1a8s5d4f6g0h2j4k', name: 'web.2.x7q3k2m9p1a8s5d4f6g0h2j4k', netns: 'weft-t-x7q3k2m9p1a8s5d4f6g0h2j4k', image: 'debian' }

t.test('a minimal spec gets an empty command and environment', async (t) => {
  const spec = parseTaskProcessSpec(base)
  t.same(spec.command, [])
  t.same(spec.env, {})
  t.equal(spec.workdir, undefined)
  t.equal(spec.user, undefined)
})

t.test('a full spec is kept as given', async (t) => {
  const full = { ...base, command: ['redis-server', '--port', '6379', ''], env: { FOO: 'bar', EMPTY: '', 'a.b-c': 'x=y' }, workdir: '/data', user: 'redis:redis', hostname: 'cache-1.example' }
  t.same(parseTaskProcessSpec(full), full)
  for (const user of ['nobody', '65534', '1000:1000', 'app:100', '100:users', 'svc$', '_apt']) {
    t.equal(parseTaskProcessSpec({ ...base, user }).user, user, `user ${user}`)
  }
})

t.test('image references: docker-style names with an optional tag, nothing that leaves the images directory', async (t) => {
  for (const image of ['debian', 'redis:7', 'library/redis:7.2-alpine', 'my_app', 'a__b', 'a--b', 'a.b/c', 'x:latest', 'x:V1_2']) {
    t.ok(IMAGE_PATTERN.test(image), `accepts ${image}`)
  }
  for (const image of ['Debian', '../etc', 'a/../b', './a', '.a', 'a/', '/a', 'a//b', 'a:', 'a:.x', 'localhost:5000/a', 'a@sha256:00', 'a b', 'a:b:c', '']) {
    t.notOk(IMAGE_PATTERN.test(image), `refuses ${JSON.stringify(image)}`)
    t.throws(() => parseTaskProcessSpec({ ...base, image }), { code: 'NETD_ERR_TASK_SPEC' })
  }
})

t.test('every problem is reported, each with its field', async (t) => {
  const bad = {
    task: '../etc',
    name: 'web 2',
    netns: '',
    image: 'Debian',
    command: ['sh', 'a\0b'],
    env: { 'A=B': '1', OK: 'x\0y', '-x': '1' },
    workdir: 'tmp',
    user: 'root:wheel:x',
    hostname: 'a'.repeat(65),
    extra: true
  }
  try {
    parseTaskProcessSpec(bad)
    t.fail('should throw')
  } catch (error) {
    const e = error as { code: string, details: string[] }
    t.equal(e.code, 'NETD_ERR_TASK_SPEC')
    const fields = e.details.map((d) => d.split(':')[0])
    for (const field of ['task', 'name', 'netns', 'image', 'command.1', 'env.A=B', 'env.OK', 'env.-x', 'workdir', 'user', 'hostname', 'spec']) {
      t.ok(fields.includes(field), `reports ${field}`)
    }
  }
})

t.test('the program name may not be empty; later arguments may', async (t) => {
  t.throws(() => parseTaskProcessSpec({ ...base, command: ['', 'x'] }), { code: 'NETD_ERR_TASK_SPEC' })
  t.same(parseTaskProcessSpec({ ...base, command: ['echo', ''] }).command, ['echo', ''])
})

t.test('host names: labels of letters, digits and dashes, at most 64 characters', async (t) => {
  for (const hostname of ['a', 'web-1', 'web.2.abc', 'A1', 'x'.repeat(63)]) t.equal(parseTaskProcessSpec({ ...base, hostname }).hostname, hostname)
  for (const hostname of ['', '-a', 'a-', 'a..b', 'a_b', 'a'.repeat(64), `${'a'.repeat(40)}.${'b'.repeat(24)}`]) {
    t.throws(() => parseTaskProcessSpec({ ...base, hostname }), { code: 'NETD_ERR_TASK_SPEC' }, `refuses ${hostname}`)
  }
})

t.test('the default hostname is the task name as a host name', async (t) => {
  t.equal(defaultHostname('web.2.x7q3k2m9p1a8s5d4f6g0h2j4k'), 'web.2.x7q3k2m9p1a8s5d4f6g0h2j4k')
  t.equal(defaultHostname('my_app.1.abc'), 'my-app.1.abc')
  t.equal(defaultHostname('-x-.1'), 'x.1')
  const long = defaultHostname(`${'s'.repeat(60)}.1.x7q3k2m9p1a8s5d4f6g0h2j4k`)
  t.ok(long.length <= 64, 'cut to 64 characters')
  t.notOk(long.endsWith('.'), 'no trailing dot')
  t.doesNotThrow(() => parseTaskProcessSpec({ ...base, hostname: long }), 'and is itself a valid hostname')
})

t.test('a docker-style env list: KEY=value, and bare KEY taken from the node', async (t) => {
  t.same(envFromList(['A=1', 'B=', 'C=x=y', 'HOME', 'NOPE'], { HOME: '/root' }), { A: '1', B: '', C: 'x=y', HOME: '/root' })
  t.same(envFromList(['A=1', 'A=2']), { A: '2' }, 'the last one wins')
})
