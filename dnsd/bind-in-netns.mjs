// @ts-check
/**
 * Runs inside a task's network namespace (started by `ip netns exec`) just long
 * enough to bind dnsd's address there, UDP and TCP, and hand both sockets to
 * the parent over the IPC channel. The sockets keep the namespace they were
 * made in, so the one dnsd process serves every task without NAT.
 *
 *   ip netns exec NS node dnsd/bind-in-netns.mjs ADDRESS PORT
 *
 * Plain JavaScript (checked by tsc through JSDoc), unlike the rest of the
 * project: it is started once per new task namespace, on the path of every
 * task start, and Node's TypeScript stripping costs ~45 ms of CPU at start-up,
 * about half of the helper's whole cost (measured: 4 helpers 160 ms as .ts,
 * 77 ms as .mjs).
 */
import { createSocket } from 'node:dgram'
import { createServer } from 'node:net'

const [address = '127.0.0.11', portText = '53'] = process.argv.slice(2)
const port = Number(portText)
const send = process.send?.bind(process)
if (!send) {
  process.stderr.write('bind-in-netns: must be started with an IPC channel\n')
  process.exit(2)
}
/** @param {Error} error */
const fail = (error) => {
  send({ error: `${error.message}` })
  process.exitCode = 1
  process.disconnect()
}

const udp = createSocket('udp4')
udp.once('error', fail)
udp.bind(port, address, () => {
  const tcp = createServer()
  tcp.once('error', fail)
  tcp.listen({ port, host: address, backlog: 512 }, () => {
    send({ kind: 'udp' }, udp, () => {
      send({ kind: 'tcp' }, tcp, () => {
        udp.close()
        tcp.close()
        process.disconnect()
      })
    })
  })
})
