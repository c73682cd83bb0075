/**
 * What a node tells the manager about itself when it registers: the
 * `Description` of `weft node inspect` (host name, platform, resources, engine).
 */
import { readFileSync } from 'node:fs'
import { arch, availableParallelism, platform, totalmem } from 'node:os'
import type { NodeDescription } from '../../manager/control.ts'

const ARCHITECTURES: Readonly<Record<string, string>> = { x64: 'x86_64', arm64: 'aarch64', ia32: 'i386', arm: 'armv7l' }

export const WEFT_VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

export function describeNode (hostname: string): NodeDescription {
  return {
    hostname,
    platform: { architecture: ARCHITECTURES[arch()] ?? arch(), os: platform() },
    resources: { nanoCPUs: availableParallelism() * 1e9, memoryBytes: totalmem() },
    engineVersion: WEFT_VERSION
  }
}
