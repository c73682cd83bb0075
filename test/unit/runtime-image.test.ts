/**
 * The image convention and paths inside an image root: what a reference
 * resolves to, and symlinks that must stay inside the root, as they will
 * once the task is chrooted there.
 */
import t, { type Test } from 'tap'
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { imageRoot, resolveImage } from '../../netd/runtime/image.ts'
import { findExecutable, isDirectoryInRoot, readRootFile, resolveInRoot } from '../../netd/runtime/root-fs.ts'

async function scratch (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-rt-image-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

t.test('no directory for the reference: the host filesystem', async (t) => {
  const images = await scratch(t)
  const image = await resolveImage(images, 'debian')
  t.same(image, { kind: 'host', reference: 'debian' })
  t.equal(imageRoot(image), '/')
  t.same(await resolveImage(join(images, 'missing-dir'), 'debian'), { kind: 'host', reference: 'debian' }, 'nor an images directory')
})

t.test('a directory with a rootfs, with and without config.json', async (t) => {
  const images = await scratch(t)
  await mkdir(join(images, 'library/redis:7/rootfs'), { recursive: true })
  t.same(await resolveImage(images, 'library/redis:7'), {
    kind: 'rootfs', reference: 'library/redis:7', dir: join(images, 'library/redis:7'), rootfs: join(images, 'library/redis:7/rootfs'), config: {}
  })
  await writeFile(join(images, 'library/redis:7/config.json'), JSON.stringify({ command: ['redis-server'], env: { A: '1' }, workdir: '/data', user: 'redis' }))
  const image = await resolveImage(images, 'library/redis:7')
  t.same(image.kind === 'rootfs' && image.config, { command: ['redis-server'], env: { A: '1' }, workdir: '/data', user: 'redis' })
  t.equal(imageRoot(image), join(images, 'library/redis:7/rootfs'))
})

t.test('a directory that is not a usable image is an error, never the host', async (t) => {
  const images = await scratch(t)
  await mkdir(join(images, 'norootfs'))
  await t.rejects(resolveImage(images, 'norootfs'), { code: 'NETD_ERR_TASK_IMAGE' })
  for (const [name, config] of [['notjson', '{'], ['unknownfield', '{"cmd":["x"]}'], ['emptycommand', '{"command":[]}'], ['relworkdir', '{"workdir":"data"}']] as const) {
    await mkdir(join(images, name, 'rootfs'), { recursive: true })
    await writeFile(join(images, name, 'config.json'), config)
    await t.rejects(resolveImage(images, name), { code: 'NETD_ERR_TASK_IMAGE' }, name)
  }
})

t.test('symlinks are followed inside the root, never out of it', async (t) => {
  const root = await scratch(t)
  await mkdir(join(root, 'usr/bin'), { recursive: true })
  await mkdir(join(root, 'etc/alternatives'), { recursive: true })
  await writeFile(join(root, 'usr/bin/tool'), '#!/bin/sh\n')
  await chmod(join(root, 'usr/bin/tool'), 0o755)
  await writeFile(join(root, 'usr/bin/data'), 'not executable')
  await symlink('usr/bin', join(root, 'bin'))
  await symlink('/usr/bin/tool', join(root, 'etc/alternatives/tool'))
  await symlink('/etc/alternatives/tool', join(root, 'usr/bin/alt'))
  await symlink('../../../../../../etc', join(root, 'escape'))
  await symlink('loop', join(root, 'loop'))
  await writeFile(join(root, 'etc/passwd'), 'app:x:1:1::/:/bin/sh\n')

  t.equal(await resolveInRoot(root, '/bin/tool'), join(root, 'usr/bin/tool'), 'a relative link')
  t.equal(await resolveInRoot(root, '/usr/bin/alt'), join(root, 'usr/bin/tool'), 'absolute links restart at the root')
  t.equal(await resolveInRoot(root, '/escape/passwd'), join(root, 'etc/passwd'), '.. stops at the root')
  t.equal(await resolveInRoot(root, '/../../etc/passwd'), join(root, 'etc/passwd'))
  t.equal(await resolveInRoot(root, '/loop'), null, 'a loop resolves to nothing')
  t.equal(await resolveInRoot(root, '/nope/x'), null)
  t.equal(await readRootFile(root, '/escape/passwd'), 'app:x:1:1::/:/bin/sh\n')
  t.equal(await readRootFile(root, '/etc/group'), '', 'a missing file reads empty')
  t.ok(await isDirectoryInRoot(root, '/bin'))
  t.notOk(await isDirectoryInRoot(root, '/bin/tool'))
})

t.test('commands are found as exec would find them in the root', async (t) => {
  const root = await scratch(t)
  await mkdir(join(root, 'usr/bin'), { recursive: true })
  await mkdir(join(root, 'srv'), { recursive: true })
  await writeFile(join(root, 'usr/bin/tool'), '')
  await chmod(join(root, 'usr/bin/tool'), 0o755)
  await writeFile(join(root, 'usr/bin/data'), '')
  await writeFile(join(root, 'srv/run.sh'), '')
  await chmod(join(root, 'srv/run.sh'), 0o700)
  await symlink('usr/bin', join(root, 'bin'))

  t.equal(await findExecutable(root, 'tool', '/nope:/bin:/usr/bin', '/'), '/bin/tool', 'the first PATH entry that has it')
  t.equal(await findExecutable(root, 'data', '/usr/bin', '/'), null, 'not executable')
  t.equal(await findExecutable(root, 'tool', 'usr/bin', '/'), null, 'relative PATH entries are skipped')
  t.equal(await findExecutable(root, './run.sh', '', '/srv'), '/srv/run.sh', 'a path, from the working directory')
  t.equal(await findExecutable(root, '/usr/bin/tool', '', '/'), '/usr/bin/tool')
  t.equal(await findExecutable(root, '/srv', '', '/'), null, 'a directory is not a command')
})
