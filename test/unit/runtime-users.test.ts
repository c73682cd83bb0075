/**
 * Users and groups from an image's /etc/passwd and /etc/group, as docker
 * resolves them: names must exist, numbers need not.
 */
import t from 'tap'
import { parseGroup, parsePasswd, resolveUser } from '../../netd/runtime/users.ts'

const passwd = parsePasswd([
  'root:x:0:0:root:/root:/bin/bash',
  'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin',
  '# a comment',
  'broken:x:notanumber:1::/:/bin/sh',
  'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
  'app:x:1234:1234::/srv/app:/bin/sh',
  'nohome:x:1300:1300:::/bin/sh',
  ''
].join('\n'))

const group = parseGroup([
  'root:x:0:',
  'adm:x:4:app,daemon',
  'users:x:100:app',
  'nogroup:x:65534:',
  'app:x:1234:',
  'staff:x:50:'
].join('\n'))

t.test('malformed passwd and group lines are skipped', async (t) => {
  t.same(passwd.map((p) => p.name), ['root', 'daemon', 'nobody', 'app', 'nohome'])
  t.same(group.find((g) => g.name === 'adm')?.members, ['app', 'daemon'])
})

t.test('no user is root, with root\'s groups and home', async (t) => {
  t.same(resolveUser(undefined, passwd, group), { uid: 0, gid: 0, groups: [0], home: '/root', name: 'root' })
})

t.test('a name: its uid, primary group, the groups that list it, its home', async (t) => {
  t.same(resolveUser('app', passwd, group), { uid: 1234, gid: 1234, groups: [1234, 4, 100], home: '/srv/app', name: 'app' })
  t.same(resolveUser('nobody', passwd, group), { uid: 65534, gid: 65534, groups: [65534], home: '/nonexistent', name: 'nobody' })
  t.equal(resolveUser('nohome', passwd, group).home, '/', 'an empty home field is /')
})

t.test('an unknown name is refused before anything starts', async (t) => {
  t.throws(() => resolveUser('redis', passwd, group), { code: 'NETD_ERR_TASK_USER' })
  t.throws(() => resolveUser('app:wheel', passwd, group), { code: 'NETD_ERR_TASK_USER' })
})

t.test('a number: the passwd entry when there is one, else gid 0 and home /', async (t) => {
  t.same(resolveUser('1234', passwd, group), { uid: 1234, gid: 1234, groups: [1234, 4, 100], home: '/srv/app', name: 'app' })
  t.same(resolveUser('4242', passwd, group), { uid: 4242, gid: 0, groups: [0], home: '/', name: null })
  t.same(resolveUser('4242:4343', passwd, group), { uid: 4242, gid: 4343, groups: [4343], home: '/', name: null })
})

t.test('an explicit group replaces the primary one; membership still counts', async (t) => {
  t.same(resolveUser('app:staff', passwd, group).groups, [50, 4, 100], 'by name')
  t.same(resolveUser('app:users', passwd, group), { uid: 1234, gid: 100, groups: [100, 4], home: '/srv/app', name: 'app' }, 'no duplicate group')
  t.equal(resolveUser('nobody:7', passwd, group).gid, 7, 'by number')
})
