/**
 * Runs inside a task's network namespace (started by `ip netns exec`) just long
 * enough to bind dnsd's address there, UDP and TCP, and hand both sockets to
 * the parent over the IPC channel. The sockets keep the namespace they were
 * made in, so the one dnsd process serves every task without NAT.
 *
 *   ip netns exec NS node dnsd/bind-in-netns.ts ADDRESS PORT
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
const fail = (error: Error): void => {
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
