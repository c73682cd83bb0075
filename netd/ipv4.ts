/**
 * Plain IPv4 addresses as 32-bit numbers, for checks made once per endpoint
 * of a document: tens of thousands of them at 10,000 services, where
 * ip-address's Address4 (through BigInt) cost a quarter of parsing the whole
 * document. Accepts exactly what `Address4.isValid` accepts for an address
 * without a prefix (unit-tested against it): four decimal octets, no leading
 * zeros, nothing around them. Subnets stay with ip-address: a few per document.
 */
const OCTET = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)'
const DOTTED_QUAD = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`)

/** The address as an unsigned 32-bit number, or null when `text` is not a plain IPv4 address. */
export function parseIpv4 (text: string): number | null {
  const octets = DOTTED_QUAD.exec(text)
  if (octets === null) return null
  return ((Number(octets[1]) << 24) | (Number(octets[2]) << 16) | (Number(octets[3]) << 8) | Number(octets[4])) >>> 0
}
