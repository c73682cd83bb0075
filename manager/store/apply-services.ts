/**
 * apply for services: create, update, scale, rollback, update-state, remove.
 *
 * A spec is checked whole before anything is written: networks exist (by id or
 * name; stored as ids) and are not the ingress network, which a service joins
 * by publishing a port; constraints parse; no published port is published
 * twice, by this service or another; dnsrr services publish only host-mode
 * ports (an ingress port needs a VIP). Then VIPs are allocated, one per
 * network in VIP mode, kept across updates for networks that stay.
 *
 * An update that changes what tasks run (spec.ts `taskSpecOf`) bumps
 * `specVersion` and starts a rolling update; other changes (replicas, update
 * config, ports that keep the service publishing) apply in place.
 */
import { parseConstraints } from '../orchestrator/constraints.ts'
import type { CommandOf } from './commands.ts'
import { fail } from './errors.ts'
import { allocateAddress, releaseAddress } from './ipam.ts'
import { findNetwork, findService } from './queries.ts'
import { canonicalJson, serviceNetworkIds, taskSpecOf, type ServiceSpec } from './spec.ts'
import type { ServiceRecord, UpdateStatus } from './state.ts'
import type { Tx } from './tx.ts'
import type { CommandResult } from './apply.ts'
import { endTask } from './apply-tasks.ts'

function resolveSpec (tx: Tx, spec: ServiceSpec, self: string | null): ServiceSpec {
  const view = tx.view()
  const seen = new Set<string>()
  const networks = spec.networks.map((attachment) => {
    const network = findNetwork(view, attachment.network)
    if (network.ingress) fail('STORE_ERR_INVALID_SPEC', `a service cannot be attached to the ingress network "${network.name}" explicitly: publish a port instead`)
    if (seen.has(network.id)) fail('STORE_ERR_INVALID_SPEC', `network ${network.name} is given twice`)
    seen.add(network.id)
    return { network: network.id, aliases: attachment.aliases }
  })
  const constraints = parseConstraints(spec.constraints)
  if (!constraints.ok) fail('STORE_ERR_INVALID_CONSTRAINT', constraints.error)

  const own = new Set<string>()
  for (const port of spec.ports) {
    if (port.published === undefined) continue
    const key = `${port.published}/${port.protocol}`
    if (own.has(key)) fail('STORE_ERR_PORT_IN_USE', `port ${key} is published twice by this service`)
    own.add(key)
    if (spec.endpointMode === 'dnsrr' && port.mode === 'ingress') {
      fail('STORE_ERR_INVALID_SPEC', `port ${key} is published in ingress mode, which needs a VIP: use endpoint mode vip, or publish it in host mode`)
    }
  }
  for (const other of tx.services.values()) {
    if (other.id === self) continue
    for (const port of other.spec.ports) {
      if (port.published !== undefined && own.has(`${port.published}/${port.protocol}`)) {
        fail('STORE_ERR_PORT_IN_USE', `port ${port.published}/${port.protocol} is already published by service ${other.spec.name} (${other.id})`)
      }
    }
  }
  return { ...spec, networks }
}

function allocateVips (tx: Tx, serviceId: string, spec: ServiceSpec, current: ServiceRecord['vips']): ServiceRecord['vips'] {
  const want = spec.endpointMode === 'vip' ? serviceNetworkIds(spec, tx.cluster!.ingressNetwork) : []
  const owner = `vip:${serviceId}`
  let ipam = tx.ipam
  for (const vip of current) if (!want.includes(vip.network)) ipam = releaseAddress(ipam, vip.network, vip.ip, owner)
  const vips = want.map((network) => {
    const kept = current.find((v) => v.network === network)
    if (kept !== undefined) return kept
    const allocation = allocateAddress(ipam, network, owner, tx.networks.get(network)?.name)
    ipam = allocation.ipam
    return { network, ip: allocation.ip }
  })
  tx.ipam = ipam
  return vips
}

const templateKey = (tx: Tx, spec: ServiceSpec): string => canonicalJson(taskSpecOf(spec, tx.cluster!.ingressNetwork))

export function serviceCreate (tx: Tx, cmd: CommandOf<'service.create'>): CommandResult {
  if (tx.services.get(cmd.id) !== undefined) fail('STORE_ERR_EXISTS', `service id ${cmd.id} is taken`)
  const name = cmd.spec.name.toLowerCase()
  const clash = tx.services.values().find((s) => s.spec.name.toLowerCase() === name)
  if (clash) fail('STORE_ERR_NAME_IN_USE', `service ${cmd.spec.name} already exists (${clash.id})`)
  const spec = resolveSpec(tx, cmd.spec, cmd.id)
  const vips = allocateVips(tx, cmd.id, spec, [])
  tx.services.put({
    id: cmd.id,
    spec,
    previousSpec: null,
    specVersion: 1,
    vips,
    updateStatus: null,
    allocationError: null,
    createdAt: tx.now,
    updatedAt: tx.now,
    version: 1
  })
  return { id: cmd.id, detail: { vips } }
}

/** Replaces a service's spec (update, scale, rollback): VIPs follow its networks; a new task spec starts a rolling update. */
function replaceSpec (tx: Tx, service: ServiceRecord, next: ServiceSpec, previous: ServiceSpec | null, startedUpdate: Omit<UpdateStatus, 'startedAt' | 'completedAt'> | null): ServiceRecord {
  if (next.name !== service.spec.name) fail('STORE_ERR_INVALID_SPEC', `service ${service.spec.name} cannot be renamed`)
  if (next.mode.kind !== service.spec.mode.kind) fail('STORE_ERR_INVALID_SPEC', `service ${service.spec.name} is ${service.spec.mode.kind}: its mode cannot be changed`)
  const spec = resolveSpec(tx, next, service.id)
  const vips = allocateVips(tx, service.id, spec, service.vips)
  const newTasks = templateKey(tx, spec) !== templateKey(tx, service.spec)
  const record: ServiceRecord = {
    ...service,
    spec,
    previousSpec: previous,
    vips,
    specVersion: newTasks ? service.specVersion + 1 : service.specVersion,
    updateStatus: newTasks && startedUpdate !== null ? { ...startedUpdate, startedAt: tx.now, completedAt: null } : service.updateStatus,
    updatedAt: tx.now,
    version: service.version + 1
  }
  tx.services.put(record)
  return record
}

export function serviceUpdate (tx: Tx, cmd: CommandOf<'service.update'>): CommandResult {
  const service = findService(tx.view(), cmd.service)
  if (cmd.version !== undefined && cmd.version !== service.version) {
    fail('STORE_ERR_VERSION_CONFLICT', `service ${service.spec.name} is at version ${service.version}, not ${cmd.version}: read it again`)
  }
  const resolved = resolveSpec(tx, cmd.spec, service.id)
  if (canonicalJson(resolved) === canonicalJson(service.spec)) return { id: service.id } // nothing changed
  const record = replaceSpec(tx, service, cmd.spec, service.spec, { state: 'updating', message: 'update in progress' })
  return { id: service.id, detail: { version: record.version, specVersion: record.specVersion } }
}

export function serviceScale (tx: Tx, cmd: CommandOf<'service.scale'>): CommandResult {
  const service = findService(tx.view(), cmd.service)
  if (service.spec.mode.kind !== 'replicated') fail('STORE_ERR_INVALID_SPEC', `service ${service.spec.name} is global: only replicated services can be scaled`)
  if (service.spec.mode.replicas === cmd.replicas) return { id: service.id } // nothing changed
  tx.services.put({
    ...service,
    spec: { ...service.spec, mode: { kind: 'replicated', replicas: cmd.replicas } },
    previousSpec: service.spec,
    updatedAt: tx.now,
    version: service.version + 1
  })
  return { id: service.id }
}

/** Swaps spec and previous spec (so a second rollback goes forward again), and rolls the tasks back. */
export function serviceRollback (tx: Tx, cmd: CommandOf<'service.rollback'>): CommandResult {
  const service = findService(tx.view(), cmd.service)
  if (service.previousSpec === null) fail('STORE_ERR_NO_PREVIOUS_SPEC', `service ${service.spec.name} has no previous spec to roll back to`)
  const message = cmd.message ?? (cmd.automatic ? 'update rolled back automatically' : 'manually requested rollback')
  const record = replaceSpec(tx, service, service.previousSpec, service.spec, { state: 'rollback_started', message })
  if (record.specVersion === service.specVersion) {
    // Nothing for tasks to do: the rollback is over as soon as it starts.
    tx.services.put({ ...record, updateStatus: { state: 'rollback_completed', startedAt: tx.now, completedAt: tx.now, message } })
  }
  return { id: service.id }
}

const NEXT_UPDATE_STATES: Readonly<Record<string, readonly string[]>> = {
  updating: ['paused', 'completed'],
  rollback_started: ['rollback_paused', 'rollback_completed']
}

export function serviceUpdateState (tx: Tx, cmd: CommandOf<'service.update-state'>): CommandResult {
  const service = findService(tx.view(), cmd.service)
  const current = service.updateStatus
  if (current === null || !(NEXT_UPDATE_STATES[current.state] ?? []).includes(cmd.state)) {
    fail('STORE_ERR_INVALID_TRANSITION', `service ${service.spec.name}: an update cannot go from ${current?.state ?? 'none'} to ${cmd.state}`)
  }
  const done = cmd.state === 'completed' || cmd.state === 'rollback_completed'
  tx.services.put({
    ...service,
    updateStatus: { state: cmd.state, startedAt: current.startedAt, completedAt: done ? tx.now : null, message: cmd.message },
    updatedAt: tx.now,
    version: service.version + 1
  })
  return { id: service.id }
}

/**
 * The service goes at once, with its VIPs; its tasks are told to stop and keep
 * their addresses until they have (the orchestrator removes them then).
 */
export function serviceRemove (tx: Tx, cmd: CommandOf<'service.remove'>): CommandResult {
  const service = findService(tx.view(), cmd.service)
  let ipam = tx.ipam
  for (const vip of service.vips) ipam = releaseAddress(ipam, vip.network, vip.ip, `vip:${service.id}`)
  tx.ipam = ipam
  for (const task of tx.tasks.values()) {
    if (task.service !== service.id || task.desiredState !== 'running') continue
    if (task.node === null || task.state === 'new' || task.state === 'pending') {
      endTask(tx, task, 'shutdown', 'service removed', { desiredState: 'shutdown' })
    } else {
      tx.tasks.put({ ...task, desiredState: 'shutdown', updatedAt: tx.now, version: task.version + 1 })
    }
  }
  tx.services.remove(service.id)
  return { id: service.id }
}
