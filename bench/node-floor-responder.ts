/**
 * bench/dns's third server: the least a Node process can do per query, so
 * that each run measures how far dnsd is from Node's own floor and how far
 * that floor is from dnsmasq. It answers every query with a copy of it (QR
 * and AA set) plus one fixed A record, on a UDP socket set up as `dnsd serve`
 * sets up its own (a lookup that hands back the peer's address literal): a
 * buffer copy and a send per datagram, no parsing, no lookup, no counters.
 * The record goes right after the question, before an EDNS OPT if there is
 * one; a compressed or multiple question is not expected from dnsperf.
 *
 * `--workers N` runs N processes sharing the address with SO_REUSEPORT, as
 * `dnsd serve --workers N` does; the first only starts and stops the others.
 *
 *   node bench/node-floor-responder.ts --listen ADDR:PORT [--workers N]
 */
import { fork, type ChildProcess } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const { values } = parseArgs({ options: { listen: { type: 'string' }, workers: { type: 'string', default: '1' }, worker: { type: 'boolean', default: false } } })
const listen = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(values.listen ?? '')
const workers = Number(values.workers)
if (listen === null) throw new Error(`--listen: want IPV4:PORT, got ${values.listen ?? 'nothing'}`)
if (!Number.isInteger(workers) || workers < 1) throw new Error(`--workers: want a positive integer, got ${values.workers}`)
const [, host, port] = listen

// Name: a pointer to the question (offset 12); A, IN, TTL 5, 4 bytes: 10.0.0.1.
const ANSWER = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 1])

if (workers > 1 && !values.worker) {
  const children: ChildProcess[] = []
  for (let i = 0; i < workers; i++) children.push(fork(fileURLToPath(import.meta.url), ['--listen', values.listen!, '--workers', String(workers), '--worker']))
  const stop = (): void => { for (const child of children) child.kill('SIGTERM') }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  for (const child of children) child.once('exit', stop)
} else {
  const lookup = (address: string, _family: unknown, callback: (error: null, address: string, family: number) => void): void => callback(null, address, 4)
  const udp = createSocket({ type: 'udp4', reusePort: workers > 1, lookup })
  udp.on('message', (query, peer) => {
    // The record goes between the question and whatever follows it (an EDNS OPT).
    let end = 12
    while (end < query.length && query[end] !== 0) end += query[end]! + 1
    end += 5
    if (end > query.length) return
    const out = Buffer.allocUnsafe(query.length + ANSWER.length)
    query.copy(out, 0, 0, end)
    ANSWER.copy(out, end)
    query.copy(out, end + ANSWER.length, end)
    out[2] = query[2]! | 0x84
    out[3] = 0
    out[7] = 1
    udp.send(out, peer.port, peer.address)
  })
  udp.bind(Number(port), host)
  process.on('SIGTERM', () => udp.close())
  process.on('SIGINT', () => udp.close())
  // A worker whose starter is gone (even by SIGKILL) must not keep the port.
  if (values.worker) process.on('disconnect', () => udp.close())
}
