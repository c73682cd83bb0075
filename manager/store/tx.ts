/**
 * A transaction over one ClusterState, used by apply's handlers: reads see the
 * handler's own writes; the first write to a table copies that table (shallow:
 * records themselves are replaced, never changed), so the state it started
 * from is untouched and a refused command is simply a transaction dropped.
 */
import type { ClusterInfo, ClusterState, IpamState, NetworkRecord, NodeRecord, ServiceRecord, TaskRecord } from './state.ts'

export class Table<T extends { readonly id: string }> {
  #base: Readonly<Record<string, T>>
  #copy: Record<string, T> | null = null
  #onWrite: () => void

  constructor (base: Readonly<Record<string, T>>, onWrite: () => void) {
    this.#base = base
    this.#onWrite = onWrite
  }

  get records (): Readonly<Record<string, T>> {
    return this.#copy ?? this.#base
  }

  get (id: string): T | undefined {
    return Object.hasOwn(this.records, id) ? this.records[id] : undefined
  }

  values (): T[] {
    return Object.values(this.records)
  }

  put (record: T): void {
    (this.#copy ??= { ...this.#base })[record.id] = record
    this.#onWrite()
  }

  remove (id: string): void {
    if (!Object.hasOwn(this.records, id)) return
    delete (this.#copy ??= { ...this.#base })[id]
    this.#onWrite()
  }
}

export class Tx {
  readonly now: number
  readonly base: ClusterState
  readonly nodes: Table<NodeRecord>
  readonly networks: Table<NetworkRecord>
  readonly services: Table<ServiceRecord>
  readonly tasks: Table<TaskRecord>
  #cluster: ClusterInfo | null
  #ipam: IpamState
  #changed = false

  constructor (base: ClusterState, now: number) {
    this.base = base
    this.now = now
    const mark = (): void => { this.#changed = true }
    this.nodes = new Table(base.nodes, mark)
    this.networks = new Table(base.networks, mark)
    this.services = new Table(base.services, mark)
    this.tasks = new Table(base.tasks, mark)
    this.#cluster = base.cluster
    this.#ipam = base.ipam
  }

  get changed (): boolean {
    return this.#changed
  }

  get cluster (): ClusterInfo | null {
    return this.#cluster
  }

  set cluster (cluster: ClusterInfo | null) {
    this.#cluster = cluster
    this.#changed = true
  }

  get ipam (): IpamState {
    return this.#ipam
  }

  set ipam (ipam: IpamState) {
    if (ipam === this.#ipam) return
    this.#ipam = ipam
    this.#changed = true
  }

  /** The state as this transaction sees it now (for queries); `index` is the base's until commit. */
  view (): ClusterState {
    return {
      format: this.base.format,
      index: this.base.index,
      cluster: this.#cluster,
      nodes: this.nodes.records,
      networks: this.networks.records,
      services: this.services.records,
      tasks: this.tasks.records,
      ipam: this.#ipam
    }
  }

  commit (): ClusterState {
    if (!this.#changed) return this.base
    return { ...this.view(), index: this.base.index + 1 }
  }
}
