/**
 * Reading `sysctl` output, shared by lb (task and host settings) and netd (br_netfilter's switches).
 */
import t from 'tap'
import { parseSysctls } from '../../lb/sysctl.ts'

t.test('sysctl output is read by name; a name the kernel lacks (skipped by -e) is absent', async (t) => {
  // Captured from `sysctl -e net.bridge.bridge-nf-call-iptables net.nope.x net.bridge.bridge-nf-call-arptables` (procps 4).
  const values = parseSysctls('net.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-arptables = 0\n')
  t.same([...values], [['net.bridge.bridge-nf-call-iptables', '1'], ['net.bridge.bridge-nf-call-arptables', '0']])
  t.same([...parseSysctls('')], [])
  t.same([...parseSysctls('kernel.domainname = (none)\nnet.ipv4.ip_local_port_range = 32768\t60999\n')], [['kernel.domainname', '(none)'], ['net.ipv4.ip_local_port_range', '32768\t60999']])
})
